import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { status } from '@grpc/grpc-js';
import { createTestCa } from '../testing/certs.ts';
import { controlPlaneIdOf, startFakeControlPlane, type FakeControlPlane } from '../testing/fake-control-plane.ts';
import { StaticSvidSource, svidFor } from '../testing/fakes.ts';
import { Verdict, type AuthorizeResponse } from '@airlock/proto/authorization/v1';
import type { AuthzRequest } from './authorizer.ts';
import { GrpcStreamAuthorizer } from './grpc-stream-authorizer.ts';
import { NoAnswerError } from './proto-mapping.ts';

const TD = 'airlock.test';
const A = `spiffe://${TD}/ns/demo/sa/alice`;
const B = `spiffe://${TD}/ns/demo/sa/bob`;
const req = (path: string): AuthzRequest => ({ direction: 'outbound', sourceId: A, host: 'bob.demo', port: 80, method: 'GET', path });
const code = (p: Promise<unknown>): Promise<unknown> => p.then(() => 'resolved', (e: unknown) => (e instanceof AirlockError ? e.code : e));
/** Answers with the request's path as the decision id, so a test can tell which call got which answer. */
const echoPath = (r: { path: string }): AuthorizeResponse => ({ verdict: Verdict.VERDICT_ALLOW, decisionId: r.path, reason: 'ok', policy: 'p', upstream: { address: '127.0.0.1:9', spiffeId: B }, dryRunDeny: false, policyVersion: 0, rule: '', mcpAllowedTools: [], tls: 0, ticket: '', approvalId: '', approvalWaitMs: 0, approvalOutcome: '', rateLimited: false, retryAfterMs: 0, addressesRequired: false, mcpBodyRequired: false });

describe('GrpcStreamAuthorizer', () => {
  const ca = createTestCa();
  const identity = new StaticSvidSource(svidFor(ca, A));
  let cp: FakeControlPlane;
  let batches: number[];
  let authorizer: GrpcStreamAuthorizer;

  beforeAll(async () => {
    cp = await startFakeControlPlane({ ca, servingId: controlPlaneIdOf(TD), requireClientCert: true });
  });
  beforeEach(() => {
    batches = [];
    authorizer = new GrpcStreamAuthorizer({ address: `127.0.0.1:${cp.port}`, controlPlaneId: controlPlaneIdOf(TD), identity, timeoutMs: 500, onBatch: (n) => batches.push(n) });
    cp.authorize = echoPath;
    cp.streamReply = (results) => [results];
  });
  afterEach(() => authorizer.close());
  afterAll(async () => {
    await cp.stop();
  });

  it('sends the calls of one event-loop turn as one message on one stream, each with its own answer', async () => {
    await authorizer.authorize(req('/warm')); // opens the stream
    const before = cp.streamMessages.length;
    const decisions = await Promise.all(Array.from({ length: 20 }, (_, i) => authorizer.authorize(req(`/c${i}`))));
    expect(decisions.map((d) => d.decisionId)).toEqual(Array.from({ length: 20 }, (_, i) => `/c${i}`));
    expect(decisions[0]).toEqual({ allowed: true, decisionId: '/c0', reason: 'ok', policy: 'p', upstream: { address: '127.0.0.1:9', spiffeId: B }, dryRunDeny: false, policyVersion: 0, rule: '', allowedTools: [] });
    expect(cp.streamMessages.length - before).toBe(1);
    expect(cp.streamMessages.at(-1)?.checks).toHaveLength(20);
    expect(batches).toEqual([1, 20]);
    expect(cp.streams.size).toBe(1);
    // A later turn is a new message on the same stream: nothing is cached.
    expect((await authorizer.authorize(req('/c0'))).decisionId).toBe('/c0');
    expect(cp.streamMessages.length - before).toBe(2);
    expect(cp.authorizeRequests.at(-1)).toEqual({ direction: 1, sourceSpiffeId: A, destinationSpiffeId: '', destinationHost: 'bob.demo', destinationPort: 80, method: 'GET', path: '/c0', mcpMethod: '', mcpTool: '', mcpUnreadable: '', mcpListedTools: [], mcpListedToolPins: [], headers: [], headersIncomplete: false, mcpArguments: '', mcpArgumentsUnreadable: '', mcpHeaderMismatch: '', inspected: false, approvalId: '', secretFindings: [], destinationAddresses: [], mcpBodySkipped: false });
  });

  it('matches answers by id when they come back out of order and in pieces', async () => {
    cp.streamReply = (results) => [...results].reverse().map((r) => [r]);
    const decisions = await Promise.all(['/a', '/b', '/c', '/d'].map((p) => authorizer.authorize(req(p))));
    expect(decisions.map((d) => d.decisionId)).toEqual(['/a', '/b', '/c', '/d']);
  });

  it('maps a DENY, an unknown verdict and a refusal (fail closed)', async () => {
    cp.authorize = (r) =>
      r.path === '/deny'
        ? { verdict: 2, decisionId: 'd', reason: 'no', policy: '', upstream: undefined, dryRunDeny: false, policyVersion: 0, rule: '', mcpAllowedTools: [], tls: 0, ticket: '', approvalId: '', approvalWaitMs: 0, approvalOutcome: '', rateLimited: false, retryAfterMs: 0, addressesRequired: false, mcpBodyRequired: false }
        : { verdict: 0, decisionId: '', reason: '', policy: '', upstream: undefined, dryRunDeny: false, policyVersion: 0, rule: '', mcpAllowedTools: [], tls: 0, ticket: '', approvalId: '', approvalWaitMs: 0, approvalOutcome: '', rateLimited: false, retryAfterMs: 0, addressesRequired: false, mcpBodyRequired: false };
    expect(await authorizer.authorize(req('/deny'))).toEqual({ allowed: false, decisionId: 'd', reason: 'no', policy: '', policyVersion: 0, rule: '' });
    expect(await code(authorizer.authorize(req('/unknown')))).toBe(ErrorCode.AuthzUnavailable);
    cp.streamReply = (results) => [results.map((r) => ({ id: r.id, decision: undefined, refusal: { code: status.PERMISSION_DENIED, message: 'not yours' } }))];
    await expect(authorizer.authorize(req('/x'))).rejects.toMatchObject({ code: ErrorCode.AuthzUnavailable, message: expect.stringContaining('not yours') as unknown });
  });

  it('gives every call its own deadline: one unanswered call fails, the others of its batch pass', async () => {
    cp.authorize = (r) => (r.path === '/hang' ? 'hang' : echoPath(r));
    const [hung, ok] = await Promise.all([code(authorizer.authorize(req('/hang'))), authorizer.authorize(req('/ok'))]);
    expect(hung).toBe(ErrorCode.AuthzUnavailable);
    expect(ok.decisionId).toBe('/ok');
    expect(cp.streamMessages.at(-1)?.checks).toHaveLength(2);
  });

  it('cancels a stream that answers nothing within a deadline (stuck), so the next call is decided on a new one', async () => {
    expect((await authorizer.authorize(req('/warm'))).decisionId).toBe('/warm');
    // The stream stays open, its connection alive, but nothing comes back on it any more.
    for (const s of cp.streams) cp.frozenStreams.add(s);
    expect(await code(authorizer.authorize(req('/stuck')))).toBe(ErrorCode.AuthzUnavailable);
    // Without the cancel this call would wait behind the stuck stream and fail too.
    expect((await authorizer.authorize(req('/after'))).decisionId).toBe('/after');
    expect([...cp.streams].filter((s) => !cp.frozenStreams.has(s))).toHaveLength(1);
    cp.frozenStreams.clear();
  });

  it('tells a check that got no answer (deadline, broken stream) from one that was answered (a refusal)', async () => {
    const failure = (p: Promise<unknown>): Promise<unknown> => p.then(() => 'resolved', (e: unknown) => e);
    cp.authorize = () => 'hang';
    expect(await failure(authorizer.authorize(req('/late'), 50))).toBeInstanceOf(NoAnswerError);
    const broken = failure(authorizer.authorize(req('/broken'), 60_000));
    await expect.poll(() => cp.authorizeRequests.filter((r) => r.path === '/broken').length).toBeGreaterThan(0);
    for (const s of cp.streams) s.emit('error', { code: status.UNAVAILABLE, details: 'going away' });
    expect(await broken).toBeInstanceOf(NoAnswerError);
    cp.authorize = echoPath;
    cp.streamReply = (results) => [results.map((r) => ({ id: r.id, decision: undefined, refusal: { code: status.PERMISSION_DENIED, message: 'not yours' } }))];
    const refused = await failure(authorizer.authorize(req('/refused')));
    expect(refused).toMatchObject({ code: ErrorCode.AuthzUnavailable });
    expect(refused).not.toBeInstanceOf(NoAnswerError);
    // Closed while a check waits (its endpoint left the list): no answer, another endpoint may give one.
    cp.authorize = () => 'hang';
    cp.streamReply = (results) => [results];
    const closed = failure(authorizer.authorize(req('/closed'), 60_000));
    await expect.poll(() => cp.authorizeRequests.filter((r) => r.path === '/closed').length).toBeGreaterThan(0);
    authorizer.close();
    expect(await closed).toBeInstanceOf(NoAnswerError);
  });

  it('fails everything pending when the stream breaks, then reopens on the next call', async () => {
    // A deadline far beyond the test's own timeout: only the break can fail these calls.
    const patient = new GrpcStreamAuthorizer({ address: `127.0.0.1:${cp.port}`, controlPlaneId: controlPlaneIdOf(TD), identity, timeoutMs: 60_000 });
    try {
      cp.authorize = () => 'hang';
      const pending = Promise.all([code(patient.authorize(req('/1'))), code(patient.authorize(req('/2')))]);
      await expect.poll(() => cp.authorizeRequests.filter((r) => r.path === '/2').length).toBeGreaterThan(0);
      for (const s of cp.streams) s.emit('error', { code: status.UNAVAILABLE, details: 'going away' });
      expect(await pending).toEqual([ErrorCode.AuthzUnavailable, ErrorCode.AuthzUnavailable]);
      cp.authorize = echoPath;
      expect((await patient.authorize(req('/after'))).decisionId).toBe('/after');
    } finally {
      patient.close();
    }
  });

  it('fails closed while the control plane is down and recovers when it is back', async () => {
    await authorizer.authorize(req('/up'));
    const port = cp.port;
    await cp.stop();
    expect(await code(authorizer.authorize(req('/down')))).toBe(ErrorCode.AuthzUnavailable);
    cp = await startFakeControlPlane({ ca, servingId: controlPlaneIdOf(TD), port, requireClientCert: true });
    cp.authorize = echoPath;
    await expect.poll(() => authorizer.authorize(req('/back')).then((d) => d.decisionId, () => 'unavailable'), { timeout: 3000, interval: 50 }).toBe('/back');
  });

  it('refuses without an SVID and when the control plane presents another SPIFFE ID', async () => {
    const none = new GrpcStreamAuthorizer({ address: `127.0.0.1:${cp.port}`, controlPlaneId: controlPlaneIdOf(TD), identity: new StaticSvidSource(), timeoutMs: 500 });
    expect(await code(none.authorize(req('/')))).toBe(ErrorCode.AuthzUnavailable);
    const impostor = new GrpcStreamAuthorizer({ address: `127.0.0.1:${cp.port}`, controlPlaneId: `spiffe://${TD}/ns/airlock-system/sa/someone-else`, identity, timeoutMs: 1000 });
    try {
      expect(await code(impostor.authorize(req('/')))).toBe(ErrorCode.AuthzUnavailable);
    } finally {
      impostor.close();
    }
  });

  it('opens a new channel for a new SVID', async () => {
    const source = new StaticSvidSource(svidFor(ca, A));
    const renewing = new GrpcStreamAuthorizer({ address: `127.0.0.1:${cp.port}`, controlPlaneId: controlPlaneIdOf(TD), identity: source, timeoutMs: 500 });
    try {
      await renewing.authorize(req('/first'));
      const streamsBefore = [...cp.streams];
      source.set(svidFor(ca, A));
      expect((await renewing.authorize(req('/second'))).decisionId).toBe('/second');
      const newStreams = [...cp.streams].filter((s) => !streamsBefore.includes(s));
      expect(newStreams).toHaveLength(1);
    } finally {
      renewing.close();
    }
  });
});
