import { status } from '@grpc/grpc-js';
import { AuthorizeRequest, Direction, Verdict, type AuthorizeCheck } from '@airlock/proto/authorization/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GrpcStreamAuthorizer } from '../../../../sidecar/src/authz/grpc-stream-authorizer.ts';
import { StaticSvidSource } from '../../../../sidecar/src/testing/fakes.ts';
import { controlPlaneSpiffeId } from '../../main.ts';
import { openAuthorizeStream, startTestControlPlane, TD, type TestControlPlane, RESEARCHER, RESEARCHERS_TO_EXAMPLE as POLICY } from '../../testing/test-control-plane.ts';
import { auditEventsOf } from '../../testing/audit-events.ts';

const check = (id: number): AuthorizeCheck => ({
  id,
  request: AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: RESEARCHER, destinationHost: 'api.example.com', destinationPort: 443, method: 'CONNECT' }),
});
const checks = (from: number, n: number): AuthorizeCheck[] => Array.from({ length: n }, (_, i) => check(from + i));

describe('AuthorizeStream limits, per stream', () => {
  let t: TestControlPlane;
  const auditSince = (from: number): Record<string, unknown>[] => auditEventsOf(t.logs.slice(from));

  beforeAll(async () => {
    // Three messages, then (practically) no refill: the test does not depend on timing.
    t = await startTestControlPlane(POLICY, 'airlock-stream-limits-', { authorizeStreamLimits: { maxChecksPerMessage: 512, messagesPerSecond: 0.001, messageBurst: 3 } });
  });
  afterAll(() => t.close());

  it('refuses the checks of a message over the rate with RESOURCE_EXHAUSTED, undecided (one refusal recorded per message at most), while another stream keeps working', async () => {
    const flooder = openAuthorizeStream(t.cp, t.svid(RESEARCHER));
    const normal = openAuthorizeStream(t.cp, t.svid(RESEARCHER));
    try {
      for (let m = 0; m < 3; m++) expect((await flooder.send(checks(m * 10, 2))).map((r) => r.decision?.verdict)).toEqual([Verdict.VERDICT_ALLOW, Verdict.VERDICT_ALLOW]);
      const before = t.logs.length;
      const over = await flooder.send(checks(100, 50));
      expect(over).toHaveLength(50);
      expect(new Set(over.map((r) => r.refusal?.code))).toEqual(new Set([status.RESOURCE_EXHAUSTED]));
      expect(over.every((r) => r.decision === undefined)).toBe(true);
      expect(over[0]?.refusal?.message).toMatch(/messages per second/);
      // Still over: refused again, and the stream stays open (a sidecar's burst fails a few calls, not the stream).
      expect((await flooder.send(checks(200, 50))).every((r) => r.refusal?.code === status.RESOURCE_EXHAUSTED)).toBe(true);
      // One (rate-limited) warning per refused message at most; none per check, and no decision audited.
      const audit = auditSince(before);
      expect(audit.filter((l) => l.kind === 'decision')).toEqual([]);
      expect(audit.length).toBeLessThanOrEqual(2);
      expect(audit.every((l) => l.kind === 'refusal' && l.operation === 'AuthorizeStream' && l.reasonCode === 'resource_exhausted')).toBe(true);
      // Another stream has its own bucket.
      expect((await normal.send(checks(300, 2))).map((r) => r.decision?.verdict)).toEqual([Verdict.VERDICT_ALLOW, Verdict.VERDICT_ALLOW]);
    } finally {
      flooder.close();
      normal.close();
    }
  });

  it('refuses a message of more than 512 checks without deciding any of them', async () => {
    const s = openAuthorizeStream(t.cp, t.svid(RESEARCHER));
    try {
      const before = t.logs.length;
      const results = await s.send(checks(0, 513));
      expect(results).toHaveLength(513);
      expect(results.every((r) => r.refusal?.code === status.RESOURCE_EXHAUSTED && r.decision === undefined)).toBe(true);
      expect(results[0]?.refusal?.message).toMatch(/more than 512 checks/);
      expect(auditSince(before).filter((l) => l.kind === 'decision')).toEqual([]);
      // 512 is within the bound (and did not spend the bucket above).
      expect((await s.send(checks(1000, 512))).every((r) => r.decision?.verdict === Verdict.VERDICT_ALLOW)).toBe(true);
    } finally {
      s.close();
    }
  });
});

describe('AuthorizeStream limits, with the defaults', () => {
  let t: TestControlPlane;

  beforeAll(async () => {
    t = await startTestControlPlane(POLICY, 'airlock-stream-defaults-');
  });
  afterAll(() => t.close());

  it("leave the sidecar's own client working through a burst (1,500 calls at once, split into messages of up to 512)", async () => {
    const id = t.svid(RESEARCHER);
    const identity = new StaticSvidSource({ spiffeId: RESEARCHER, certChainPem: id.certPem, keyPem: id.keyPem, trustBundlePem: t.cp.trustBundlePem, expiresAt: new Date(Date.now() + 600_000) });
    const batches: number[] = [];
    const authorizer = new GrpcStreamAuthorizer({ address: `127.0.0.1:${t.cp.grpcPort}`, controlPlaneId: controlPlaneSpiffeId(TD), identity, timeoutMs: 30_000, onBatch: (n) => batches.push(n) });
    try {
      const call = (): ReturnType<GrpcStreamAuthorizer['authorize']> => authorizer.authorize({ direction: 'outbound', sourceId: RESEARCHER, host: 'api.example.com', port: 443, method: 'CONNECT', path: '' });
      for (let round = 0; round < 2; round++) {
        const decisions = await Promise.all(Array.from({ length: 1500 }, call));
        expect(decisions.every((d) => d.allowed)).toBe(true);
      }
      expect(Math.max(...batches)).toBe(512);
    } finally {
      authorizer.close();
    }
  });
});
