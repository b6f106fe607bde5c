import { status, type ServiceError } from '@grpc/grpc-js';
import { AuthorizeRequest, Direction, Verdict, type AuthorizeCheck } from '@airlock/proto/authorization/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningControlPlane } from '../../main.ts';
import { adminFetch, openAuthorizeStream as openStream, RESEARCHER, RESEARCHERS_TO_EXAMPLE as POLICY, startTestControlPlane, TD, type TestControlPlane } from '../../testing/test-control-plane.ts';
import { auditEventsOf } from '../../testing/audit-events.ts';

const TOOL = `spiffe://${TD}/ns/demo/sa/tool`;

const check = (id: number, r: Partial<AuthorizeRequest>): AuthorizeCheck => ({
  id,
  request: AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: RESEARCHER, destinationHost: 'api.example.com', destinationPort: 443, method: 'CONNECT', ...r }),
});

describe('AuthorizeStream', () => {
  let t: TestControlPlane;
  let cp: RunningControlPlane;
  let logs: Record<string, unknown>[];
  const svid = (spiffeId: string, ttlMs?: number): ReturnType<TestControlPlane['svid']> => t.svid(spiffeId, ttlMs);

  beforeAll(async () => {
    t = await startTestControlPlane(POLICY, 'airlock-stream-');
    cp = t.cp;
    logs = t.logs;
  });
  afterAll(() => t.close());

  it('decides each check of a batch on its own and refuses, audited, those about another identity', async () => {
    const s = openStream(cp, svid(RESEARCHER));
    try {
      const before = logs.length;
      const results = await s.send([
        check(7, {}),
        check(8, { sourceSpiffeId: TOOL }),
        check(9, { direction: Direction.DIRECTION_INBOUND, sourceSpiffeId: RESEARCHER, destinationSpiffeId: TOOL, destinationHost: 'tool.demo', destinationPort: 8080, method: 'GET', path: '/' }),
        check(10, { destinationHost: 'api.other.com' }),
      ]);
      const byId = new Map(results.map((r) => [r.id, r]));
      expect(byId.get(7)?.decision).toMatchObject({ verdict: Verdict.VERDICT_ALLOW, policy: 'researchers-to-example' });
      expect(byId.get(8)).toMatchObject({ decision: undefined, refusal: { code: status.PERMISSION_DENIED } });
      expect(byId.get(8)?.refusal?.message).toMatch(/source of an OUTBOUND request must be the caller/);
      expect(byId.get(9)).toMatchObject({ decision: undefined, refusal: { code: status.PERMISSION_DENIED } });
      expect(byId.get(10)?.decision).toMatchObject({ verdict: Verdict.VERDICT_DENY });
      const audit = auditEventsOf(logs.slice(before));
      expect(audit.map((l) => l.verdict ?? l.kind).sort()).toEqual(['allow', 'deny', 'refusal', 'refusal']);
      expect(audit.find((l) => l.kind === 'refusal' && (l.request as { source?: string } | undefined)?.source === TOOL)).toBeDefined();
      // The stream goes on after a refusal, and a decision id is never reused.
      const again = await s.send([check(11, {})]);
      expect(again[0]?.decision?.verdict).toBe(Verdict.VERDICT_ALLOW);
      expect(again[0]?.decision?.decisionId).not.toBe(byId.get(7)?.decision?.decisionId);
      const metrics = await (await fetch(`http://127.0.0.1:${cp.httpPort}/metrics`)).text();
      expect(metrics).toMatch(/airlock_authz_refused_total\{reason="permission_denied",process="control-plane"\} 2/);
    } finally {
      s.close();
    }
  });

  it('ends a stream without a client certificate at once, with UNAUTHENTICATED and no result', async () => {
    const s = openStream(cp, undefined);
    try {
      const answered: unknown[] = [];
      s.stream.on('data', (m) => answered.push(m));
      s.stream.write({ checks: [check(1, {}), check(2, {})] });
      expect((await s.ended)?.code).toBe(status.UNAUTHENTICATED);
      expect(answered).toEqual([]);
    } finally {
      s.close();
    }
  });

  it('ends the stream with UNAUTHENTICATED once its certificate has expired', async () => {
    const s = openStream(cp, svid(RESEARCHER, 2_000));
    try {
      expect((await s.send([check(1, {})]))[0]?.decision?.verdict).toBe(Verdict.VERDICT_ALLOW);
      let end: ServiceError | undefined | 'open' = 'open';
      void s.ended.then((e) => (end = e));
      await expect
        .poll(
          () => {
            if (end === 'open') s.stream.write({ checks: [check(2, {})] });
            return end === 'open' ? 'open' : end?.code;
          },
          { timeout: 8_000, interval: 250 },
        )
        .toBe(status.UNAUTHENTICATED);
    } finally {
      s.close();
    }
  });

  // Last in this file: it retires the root every other test's SVIDs come from.
  it('ends a stream whose certificate comes from a root retired by force', async () => {
    const s = openStream(cp, svid(RESEARCHER));
    try {
      expect((await s.send([check(1, {})]))[0]?.decision?.verdict).toBe(Verdict.VERDICT_ALLOW);
      const admin = (step: string, body: unknown): Promise<Response> =>
        adminFetch(cp, `/v1/ca/${step}`, { method: 'POST', headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect((await admin('prepare', {})).status).toBe(200);
      expect((await admin('activate', {})).status).toBe(200);
      // The same stream still decides while its root is only "previous" (still trusted).
      expect((await s.send([check(2, {})]))[0]?.decision?.verdict).toBe(Verdict.VERDICT_ALLOW);
      expect((await admin('retire', { force: true })).status).toBe(200);
      s.stream.write({ checks: [check(3, {})] });
      const end = await s.ended;
      expect(end?.code).toBe(status.UNAUTHENTICATED);
      expect(end?.details).toContain('no longer trusted');
    } finally {
      s.close();
    }
  });
});
