import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AirlockError } from '@airlock/common/errors';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRegistry } from '@airlock/common/telemetry';
import { Direction, Verdict, AuthorizeRequest } from '@airlock/proto/authorization/v1';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CertificateAuthority } from '../ca/ca.ts';
import { makeCsr } from '../ca/test-csr.ts';
import { createControlPlaneMetrics } from '../monitoring/metrics.ts';
import { PolicyEngine } from '../policy/engine.ts';
import { parsePolicyText } from '../policy/load.ts';
import type { AgentRecord } from '../store/store.ts';
import { Authorizer } from './authorize.ts';
import { verifyPeerCertificate } from '../api/peer.ts';
import { lookupMeshHost } from './registry.ts';
import { NO_AUDIT } from '../audit/event.ts';

const TD = 'airlock.test';
const A = `spiffe://${TD}/ns/demo/sa/a`;
const B = `spiffe://${TD}/ns/demo/sa/b.v2`;

describe('verifyPeerCertificate', () => {
  let dir: string;
  let ca: CertificateAuthority;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-peer-'));
    ca = CertificateAuthority.loadOrCreate(dir, TD);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const der = (pem: string): Buffer => new X509Certificate(pem).raw;

  it('returns the SPIFFE ID of a valid SVID', () => {
    const cert = ca.issueSvid(makeCsr().csrPem, A, 60_000);
    expect(verifyPeerCertificate(der(cert.certPem), ca.publicKey, TD).uri).toBe(A);
  });

  it('refuses a missing, expired, foreign or CA certificate', () => {
    const cert = ca.issueSvid(makeCsr().csrPem, A, 60_000);
    expect(() => verifyPeerCertificate(undefined, ca.publicKey, TD)).toThrow(/required/);
    expect(() => verifyPeerCertificate(der(cert.certPem), ca.publicKey, TD, Date.now() + 120_000)).toThrow(/not valid now/);
    const otherDir = mkdtempSync(join(tmpdir(), 'airlock-peer-other-'));
    try {
      const other = CertificateAuthority.loadOrCreate(otherDir, TD);
      expect(() => verifyPeerCertificate(der(other.issueSvid(makeCsr().csrPem, A, 60_000).certPem), ca.publicKey, TD)).toThrow(/not issued by this control plane/);
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
    expect(() => verifyPeerCertificate(der(ca.certPem), ca.publicKey, TD)).toThrow(/CA certificate/);
  });
});

describe('Authorizer', () => {
  // The registered agents, as AgentRegistry holds them in memory.
  const agents = new Map<string, AgentRecord>();
  agents.set(B, { spiffeId: B, inboundAddress: '127.0.0.1:9', updatedAt: 1 });
  const policy = new PolicyEngine(
    parsePolicyText(
      `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: all }\nspec: { selector: { namespace: demo } }\n---\n` +
        `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec: { from: { segments: [all] }, to: { segments: [all] }, action: allow }\n`,
      'p.yaml',
    ),
    TD,
  );
  const registry = createRegistry('test');
  const authorizer = new Authorizer({
    trustDomain: TD,
    decisions: () => ({ engine: policy, agents, revoked: new Set<string>(), quarantined: new Map() }),
    metrics: createControlPlaneMetrics(registry),
    audit: NO_AUDIT,
  });
  const req = (over: Partial<AuthorizeRequest>): AuthorizeRequest =>
    AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: A, destinationHost: 'b.v2.demo', destinationPort: 80, method: 'GET', path: '/', ...over });

  it('resolves a registered mesh host (service accounts may hold dots) to its upstream', () => {
    expect(lookupMeshHost(agents, TD, 'B.V2.demo.')?.id.uri).toBe(B);
    expect(lookupMeshHost(agents, TD, 'nobody.demo')).toBeUndefined();
    expect(lookupMeshHost(agents, TD, 'localhost')).toBeUndefined();
    const res = authorizer.authorize(parseSpiffeId(A), req({}));
    expect(res).toMatchObject({ verdict: Verdict.VERDICT_ALLOW, policy: 'p', upstream: { address: '127.0.0.1:9', spiffeId: B } });
  });

  it('refuses unspecified directions, other identities and unauthenticated callers', () => {
    const code = (fn: () => unknown): string => {
      try {
        fn();
      } catch (err) {
        return (err as AirlockError).code;
      }
      return 'none';
    };
    expect(code(() => authorizer.authorize(parseSpiffeId(A), req({ direction: Direction.DIRECTION_UNSPECIFIED })))).toBe('AIRLOCK_BAD_REQUEST');
    expect(code(() => authorizer.authorize(parseSpiffeId(B), req({})))).toBe('AIRLOCK_PERMISSION_DENIED');
    expect(code(() => authorizer.authorize(parseSpiffeId(A), req({ direction: Direction.DIRECTION_INBOUND, sourceSpiffeId: B, destinationSpiffeId: B })))).toBe('AIRLOCK_PERMISSION_DENIED');
    expect(code(() => authorizer.authorize(new AirlockError('AIRLOCK_UNAUTHENTICATED', 'no cert'), req({})))).toBe('AIRLOCK_UNAUTHENTICATED');
    expect(code(() => authorizer.authorize(parseSpiffeId(B), req({ direction: Direction.DIRECTION_INBOUND, sourceSpiffeId: 'junk', destinationSpiffeId: B })))).toBe('AIRLOCK_BAD_REQUEST');
  });

  it('leaves the headers out of the decision when no rule looks at them', () => {
    const evaluate = vi.spyOn(policy, 'evaluate');
    try {
      const res = authorizer.authorize(parseSpiffeId(A), req({ headers: [{ name: 'x-tenant', value: 'a' }], headersIncomplete: true }));
      expect(res.verdict).toBe(Verdict.VERDICT_ALLOW);
      expect(evaluate.mock.calls[0]?.[0].headers).toBeUndefined();
    } finally {
      evaluate.mockRestore();
    }
  });

  it('denies an INBOUND call from a foreign trust domain', () => {
    const res = authorizer.authorize(parseSpiffeId(B), req({ direction: Direction.DIRECTION_INBOUND, sourceSpiffeId: 'spiffe://evil.test/ns/demo/sa/a', destinationSpiffeId: B }));
    expect(res.verdict).toBe(Verdict.VERDICT_DENY);
    expect(res.upstream).toBeUndefined();
  });
});

describe('Authorizer: labels and headers', () => {
  const C = `spiffe://${TD}/ns/demo/sa/c`;
  // The registered agents, as AgentRegistry holds them in memory.
  const agents = new Map<string, AgentRecord>();
  agents.set(A, { spiffeId: A, inboundAddress: '127.0.0.1:8', updatedAt: 1, labels: { team: 'research' } });
  agents.set(B, { spiffeId: B, inboundAddress: '127.0.0.1:9', updatedAt: 1, labels: { role: 'tools' } });
  agents.set(C, { spiffeId: C, inboundAddress: '127.0.0.1:7', updatedAt: 1, labels: { team: 'ops' } });
  const policy = new PolicyEngine(
    parsePolicyText(
      `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: research }\nspec: { selector: { labels: { team: research } } }\n---\n` +
        `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: tools }\nspec: { selector: { labels: { role: tools } } }\n---\n` +
        `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec: { from: { segments: [research] }, to: { segments: [tools] }, rules: [ { headers: [ { name: x-tenant, values: [a] } ] } ], action: allow }\n`,
      'p.yaml',
    ),
    TD,
  );
  const authorizer = new Authorizer({
    trustDomain: TD,
    decisions: () => ({ engine: policy, agents, revoked: new Set<string>(), quarantined: new Map() }),
    metrics: createControlPlaneMetrics(createRegistry('test')),
    audit: NO_AUDIT,
  });
  const req = (over: Partial<AuthorizeRequest>): AuthorizeRequest =>
    AuthorizeRequest.fromPartial({
      direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: A, destinationHost: 'b.v2.demo', destinationPort: 80, method: 'GET', path: '/',
      headers: [{ name: 'x-tenant', value: 'a' }],
      ...over,
    });

  it('decides on the stored labels of both agents, outbound and inbound', () => {
    expect(authorizer.authorize(parseSpiffeId(A), req({})).verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(authorizer.authorize(parseSpiffeId(C), req({ sourceSpiffeId: C })).verdict).toBe(Verdict.VERDICT_DENY);
    expect(authorizer.authorize(parseSpiffeId(B), req({ direction: Direction.DIRECTION_INBOUND, destinationSpiffeId: B })).verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(authorizer.authorize(parseSpiffeId(B), req({ direction: Direction.DIRECTION_INBOUND, sourceSpiffeId: C, destinationSpiffeId: B })).verdict).toBe(Verdict.VERDICT_DENY);
  });

  it('decides on the headers sent, and refuses more than the sidecar may send', () => {
    expect(policy.usesHeaders).toBe(true);
    expect(authorizer.authorize(parseSpiffeId(A), req({ headers: [{ name: 'x-tenant', value: 'b' }] })).verdict).toBe(Verdict.VERDICT_DENY);
    const many = Array.from({ length: 33 }, (_, i) => ({ name: `x-${i}`, value: 'v' }));
    expect(() => authorizer.authorize(parseSpiffeId(A), req({ headers: many }))).toThrow(/more than 32 headers/);
    expect(() => authorizer.authorize(parseSpiffeId(A), req({ headers: [{ name: 'x-big', value: 'v'.repeat(8192) }] }))).toThrow(/more than 8192 bytes/);
  });
});


describe('Authorizer: host policies never admit a call into an agent', () => {
  const EGRESS = `spiffe://${TD}/ns/demo/sa/egress`;
  // The registered agents, as AgentRegistry holds them in memory.
  const agents = new Map<string, AgentRecord>();
  agents.set(B, { spiffeId: B, inboundAddress: '127.0.0.1:9', updatedAt: 1 });
  // egress may reach external hosts (some of mesh-host shape) and nothing else.
  const policy = new PolicyEngine(
    parsePolicyText(
      `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: egress }\nspec: { selector: { namespace: demo, serviceAccounts: [egress] } }\n---\n` +
        `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: egress-out }\nspec: { from: { segments: [egress] }, to: { hosts: [api.openai.com, "*.demo", b.v2.demo] }, action: allow }\n`,
      'p.yaml',
    ),
    TD,
  );
  const authorizer = new Authorizer({ trustDomain: TD, decisions: () => ({ engine: policy, agents, revoked: new Set<string>(), quarantined: new Map() }), metrics: createControlPlaneMetrics(createRegistry('test')), audit: NO_AUDIT });
  const inbound = (host: string): AuthorizeRequest =>
    AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_INBOUND, sourceSpiffeId: EGRESS, destinationSpiffeId: B, destinationHost: host, destinationPort: 443, method: 'GET', path: '/v1/admin' });

  it('an INBOUND call is judged with the receiving agent as destination, whatever Host was sent', () => {
    for (const host of ['api.openai.com', 'API.OPENAI.COM', 'api.openai.com.', 'x.demo', 'b.v2.demo']) {
      const res = authorizer.authorize(parseSpiffeId(B), inbound(host));
      expect(res, host).toMatchObject({ verdict: Verdict.VERDICT_DENY, policy: '', reason: `no policy allows GET /v1/admin from ${EGRESS} to b.v2.demo:443` });
    }
  });

  it('an OUTBOUND call to a registered agent is not admitted by a host policy naming its mesh host', () => {
    const outbound = (host: string): AuthorizeRequest =>
      AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: EGRESS, destinationHost: host, destinationPort: 80, method: 'GET', path: '/' });
    for (const host of ['b.v2.demo', 'B.V2.DEMO.']) {
      const res = authorizer.authorize(parseSpiffeId(EGRESS), outbound(host));
      expect(res, host).toMatchObject({ verdict: Verdict.VERDICT_DENY, policy: '' });
      expect(res.upstream).toBeUndefined();
    }
    // An unregistered name of the same shape is an external host: the host policy applies.
    expect(authorizer.authorize(parseSpiffeId(EGRESS), outbound('nobody.demo'))).toMatchObject({ verdict: Verdict.VERDICT_ALLOW, policy: 'egress-out', upstream: undefined });
    expect(authorizer.authorize(parseSpiffeId(EGRESS), outbound('api.openai.com'))).toMatchObject({ verdict: Verdict.VERDICT_ALLOW, policy: 'egress-out' });
  });
});
