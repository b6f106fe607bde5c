import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { createTestCa } from '../testing/certs.ts';
import { controlPlaneIdOf, startFakeControlPlane, type FakeControlPlane } from '../testing/fake-control-plane.ts';
import { StaticSvidSource, svidFor } from '../testing/fakes.ts';
import { GrpcUnaryAuthorizer } from './grpc-unary-authorizer.ts';
import { NoAnswerError } from './proto-mapping.ts';

const TD = 'airlock.test';
const A = `spiffe://${TD}/ns/demo/sa/alice`;
const B = `spiffe://${TD}/ns/demo/sa/bob`;

describe('GrpcUnaryAuthorizer', () => {
  const ca = createTestCa();
  const identity = new StaticSvidSource(svidFor(ca, A));
  let cp: FakeControlPlane;
  let authorizer: GrpcUnaryAuthorizer;

  beforeAll(async () => {
    cp = await startFakeControlPlane({ ca, servingId: controlPlaneIdOf(TD), requireClientCert: true });
    authorizer = new GrpcUnaryAuthorizer({ address: `127.0.0.1:${cp.port}`, controlPlaneId: controlPlaneIdOf(TD), identity, timeoutMs: 500 });
  });
  afterAll(async () => {
    authorizer.close();
    await cp.stop();
  });

  it('sends every field over mTLS and maps an ALLOW with upstream', async () => {
    cp.authorize = () => ({ verdict: 1, decisionId: 'd1', reason: 'ok', policy: 'p1', upstream: { address: '127.0.0.1:9', spiffeId: B }, dryRunDeny: false, policyVersion: 3, rule: 'rules[0]', mcpAllowedTools: [], tls: 0, ticket: '', approvalId: '', approvalWaitMs: 0, approvalOutcome: '', rateLimited: false, retryAfterMs: 0, addressesRequired: false, mcpBodyRequired: false });
    const decision = await authorizer.authorize({ direction: 'outbound', sourceId: A, host: 'bob.demo', port: 80, method: 'GET', path: '/x?y=1', headers: { entries: [{ name: 'x-tenant', value: 'a' }], incomplete: true }, destinationAddresses: ['203.0.113.7', '2001:db8::7'], mcpBodySkipped: true });
    expect(decision).toEqual({ allowed: true, decisionId: 'd1', reason: 'ok', policy: 'p1', policyVersion: 3, rule: 'rules[0]', upstream: { address: '127.0.0.1:9', spiffeId: B }, dryRunDeny: false, allowedTools: [] });
    expect(cp.authorizeRequests.at(-1)).toEqual({ direction: 1, sourceSpiffeId: A, destinationSpiffeId: '', destinationHost: 'bob.demo', destinationPort: 80, method: 'GET', path: '/x?y=1', mcpMethod: '', mcpTool: '', mcpUnreadable: '', mcpListedTools: [], mcpListedToolPins: [], headers: [{ name: 'x-tenant', value: 'a' }], headersIncomplete: true, mcpArguments: '', mcpArgumentsUnreadable: '', mcpHeaderMismatch: '', inspected: false, approvalId: '', secretFindings: [], destinationAddresses: ['203.0.113.7', '2001:db8::7'], mcpBodySkipped: true });
  });

  it('maps mcp_body_required: not a decision, read the body and ask again', async () => {
    cp.authorize = () => ({ verdict: 2, decisionId: 'd9', reason: 'read it', policy: '', upstream: undefined, dryRunDeny: false, policyVersion: 5, rule: '', mcpAllowedTools: [], tls: 0, ticket: '', approvalId: '', approvalWaitMs: 0, approvalOutcome: '', rateLimited: false, retryAfterMs: 0, addressesRequired: false, mcpBodyRequired: true });
    expect(await authorizer.authorize({ direction: 'outbound', sourceId: A, host: 'bob.demo', port: 80, method: 'POST', path: '/mcp', mcpBodySkipped: true })).toEqual({ allowed: false, decisionId: 'd9', reason: 'read it', policy: '', policyVersion: 5, rule: '', mcpBodyRequired: true });
  });

  it('maps a DENY and an ALLOW without upstream (external)', async () => {
    cp.authorize = () => ({ verdict: 2, decisionId: 'd2', reason: 'no', policy: '', upstream: undefined, dryRunDeny: false, policyVersion: 0, rule: '', mcpAllowedTools: [], tls: 0, ticket: '', approvalId: '', approvalWaitMs: 0, approvalOutcome: '', rateLimited: false, retryAfterMs: 0, addressesRequired: false, mcpBodyRequired: false });
    expect(await authorizer.authorize({ direction: 'inbound', sourceId: B, destinationId: A, host: 'alice.demo', port: 80, method: 'GET', path: '/' })).toEqual({
      allowed: false, decisionId: 'd2', reason: 'no', policy: '', policyVersion: 0, rule: '',
    });
    expect(cp.authorizeRequests.at(-1)).toMatchObject({ direction: 2, sourceSpiffeId: B, destinationSpiffeId: A });
    cp.authorize = () => ({ verdict: 1, decisionId: 'd3', reason: 'ok', policy: 'egress', upstream: undefined, dryRunDeny: false, policyVersion: 0, rule: '', mcpAllowedTools: [], tls: 0, ticket: '', approvalId: '', approvalWaitMs: 0, approvalOutcome: '', rateLimited: false, retryAfterMs: 0, addressesRequired: false, mcpBodyRequired: false });
    expect(await authorizer.authorize({ direction: 'outbound', sourceId: A, host: 'api.example.com', port: 80, method: 'GET', path: '/' })).toMatchObject({ allowed: true, upstream: undefined });
  });

  it('fails with AIRLOCK_AUTHZ_UNAVAILABLE at the deadline, on an unknown verdict, and without an SVID', async () => {
    const code = (p: Promise<unknown>): Promise<unknown> => p.then(() => 'resolved', (e: unknown) => (e instanceof AirlockError ? e.code : e));
    const req = { direction: 'outbound', sourceId: A, host: 'h', port: 80, method: 'GET', path: '/' } as const;
    cp.authorize = () => 'hang';
    expect(await code(authorizer.authorize(req))).toBe(ErrorCode.AuthzUnavailable);
    cp.authorize = () => ({ verdict: 0, decisionId: '', reason: '', policy: '', upstream: undefined, dryRunDeny: false, policyVersion: 0, rule: '', mcpAllowedTools: [], tls: 0, ticket: '', approvalId: '', approvalWaitMs: 0, approvalOutcome: '', rateLimited: false, retryAfterMs: 0, addressesRequired: false, mcpBodyRequired: false });
    expect(await code(authorizer.authorize(req))).toBe(ErrorCode.AuthzUnavailable);
    const none = new GrpcUnaryAuthorizer({ address: `127.0.0.1:${cp.port}`, controlPlaneId: controlPlaneIdOf(TD), identity: new StaticSvidSource(), timeoutMs: 500 });
    expect(await code(none.authorize(req))).toBe(ErrorCode.AuthzUnavailable);
  });

  it('tells a check that got no answer (worth asking another replica) from one that was answered', async () => {
    const req = { direction: 'outbound', sourceId: A, host: 'h', port: 80, method: 'GET', path: '/' } as const;
    const failure = (p: Promise<unknown>): Promise<unknown> => p.then(() => 'resolved', (e: unknown) => e);
    cp.authorize = () => 'hang';
    expect(await failure(authorizer.authorize(req, 50))).toBeInstanceOf(NoAnswerError);
    cp.authorize = () => ({ verdict: 0, decisionId: '', reason: '', policy: '', upstream: undefined, dryRunDeny: false, policyVersion: 0, rule: '', mcpAllowedTools: [], tls: 0, ticket: '', approvalId: '', approvalWaitMs: 0, approvalOutcome: '', rateLimited: false, retryAfterMs: 0, addressesRequired: false, mcpBodyRequired: false });
    const unknownVerdict = await failure(authorizer.authorize(req));
    expect(unknownVerdict).toMatchObject({ code: ErrorCode.AuthzUnavailable });
    expect(unknownVerdict).not.toBeInstanceOf(NoAnswerError);
  });

  it('refuses a control plane that presents another SPIFFE ID', async () => {
    const impostor = new GrpcUnaryAuthorizer({ address: `127.0.0.1:${cp.port}`, controlPlaneId: `spiffe://${TD}/ns/airlock-system/sa/someone-else`, identity, timeoutMs: 1000 });
    try {
      await expect(impostor.authorize({ direction: 'outbound', sourceId: A, host: 'h', port: 80, method: 'GET', path: '/' })).rejects.toMatchObject({ code: ErrorCode.AuthzUnavailable });
    } finally {
      impostor.close();
    }
  });

  it('fails closed while the control plane is down and recovers quickly when it is back', async () => {
    const port = cp.port;
    await cp.stop();
    const req = { direction: 'outbound', sourceId: A, host: 'h', port: 80, method: 'GET', path: '/' } as const;
    await expect(authorizer.authorize(req)).rejects.toMatchObject({ code: ErrorCode.AuthzUnavailable });
    cp = await startFakeControlPlane({ ca, servingId: controlPlaneIdOf(TD), port, requireClientCert: true });
    const started = Date.now();
    await expect.poll(() => authorizer.authorize(req).then((d) => d.allowed, () => 'unavailable'), { timeout: 3000, interval: 50 }).toBe(true);
    expect(Date.now() - started).toBeLessThan(2500);
  });
});
