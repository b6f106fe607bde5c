// A real control plane (real TLS gRPC) shipping its audit trail to a collector on loopback: every
// event of the run arrives and its chain verifies from the collector's copy; with fail-closed and the
// collector gone, Authorize is refused once the spool is full, and served again once it drains.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { AuthorizeRequest, Direction, Verdict, type AuthorizeCheck } from '@airlock/proto/authorization/v1';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { auditEventsOf, auditSchemaProblems } from '../testing/audit-events.ts';
import { Collector, until } from '../testing/audit-collector.ts';
import { openAuthorizeStream, RESEARCHER, RESEARCHERS_TO_EXAMPLE, startTestControlPlane, type TestControlPlane } from '../testing/test-control-plane.ts';
import { verifyAuditChains } from './verify-chain.ts';

const check = (id: number): AuthorizeCheck => ({
  id,
  request: AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: RESEARCHER, destinationHost: 'api.example.com', destinationPort: 443, method: 'CONNECT' }),
});

describe('a control plane shipping its audit trail over HTTP', () => {
  let dir: string;
  let collector: Collector;
  let t: TestControlPlane | undefined;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-sink-cp-'));
    collector = new Collector();
    await collector.start();
  });
  afterEach(async () => {
    await t?.close();
    t = undefined;
    await collector.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${t?.cp.httpPort ?? 0}/metrics`)).text();

  it('delivers every audit event of the run with the bearer token, and the collected chain verifies', async () => {
    writeFileSync(join(dir, 'token'), 'siem-token\n');
    t = await startTestControlPlane(RESEARCHERS_TO_EXAMPLE, 'airlock-sink-cp-', {}, { auditHttpUrl: `http://127.0.0.1:${collector.port}/_bulk`, auditHttpTokenFile: join(dir, 'token'), auditCheckpointEvery: '20' });
    const s = openAuthorizeStream(t.cp, t.svid(RESEARCHER));
    try {
      for (let m = 0; m < 5; m++) expect((await s.send(Array.from({ length: 10 }, (_, i) => check(m * 10 + i)))).every((r) => r.decision?.verdict === Verdict.VERDICT_ALLOW)).toBe(true);
    } finally {
      s.close();
    }
    // Decisions past a checkpoint wait for its signature (on the thread pool): the answers can be
    // back before their events are written. Wait for all 50, and compare what was logged then.
    const logs = t.logs;
    let events: Record<string, unknown>[] = [];
    await until('every decision audited and every event delivered', () => {
      events = auditEventsOf(logs);
      return events.filter((e) => e.kind === 'decision').length === 50 && collector.lines().length >= events.length;
    });
    const collected = collector.lines().slice(0, events.length);
    expect(collected.map((l) => JSON.parse(l) as unknown)).toEqual(events);
    expect(new Set(collector.batches.map((b) => b.token))).toEqual(new Set(['Bearer siem-token']));
    for (const l of collected) expect(auditSchemaProblems(JSON.parse(l))).toEqual([]);
    const verified = verifyAuditChains([{ name: 'collector', text: collected.map((l) => `{"audit":${l}}`).join('\n') }], { roots: [new X509Certificate(t.cp.trustBundlePem)] });
    expect(verified.broken).toBeUndefined();
    expect(verified.events).toBeGreaterThanOrEqual(50);
    expect(verified.chains[0]?.checkpoints).toBeGreaterThanOrEqual(2);
    // The counter counts what the collector took (a checkpoint signed meanwhile may add one more to both).
    const delivered = async (): Promise<number> => Number(/airlock_audit_events_delivered_total\{sink="http",process="control-plane"\} (\d+)/.exec(await metrics())?.[1] ?? -1);
    await until('every delivered event counted', async () => (await delivered()) === collector.lines().length);
  });

  it('fail-closed: with the collector gone and the spool full, Authorize is refused UNAVAILABLE (counted), and served again once the spool drains', async () => {
    const port = collector.port;
    await collector.stop();
    t = await startTestControlPlane(RESEARCHERS_TO_EXAMPLE, 'airlock-sink-cp-', {}, { auditHttpUrl: `http://127.0.0.1:${port}/_bulk`, auditSpoolMaxBytes: '65536', auditSpoolFull: 'fail-closed' });
    const s = openAuthorizeStream(t.cp, t.svid(RESEARCHER));
    try {
      let refusal: { code: number; message: string } | undefined;
      for (let m = 0; m < 200 && refusal === undefined; m++) {
        const results = await s.send(Array.from({ length: 10 }, (_, i) => check(m * 10 + i)));
        refusal = results.find((r) => r.refusal !== undefined)?.refusal;
      }
      expect(refusal?.code).toBe(status.UNAVAILABLE);
      expect(refusal?.message).toMatch(/audit events cannot be written .*fail-closed/);
      // Still refused: nothing was delivered meanwhile.
      expect((await s.send([check(5000)]))[0]?.refusal?.code).toBe(status.UNAVAILABLE);
      const m = await metrics();
      expect(m).toMatch(/airlock_audit_events_dropped_total\{sink="http",reason="spool_full",process="control-plane"\} [1-9]/);
      expect(m).toMatch(/airlock_authz_refused_total\{reason="audit_unavailable",process="control-plane"\} [1-9]/);
      expect(m).toMatch(/airlock_audit_spool_bytes\{sink="http",process="control-plane"\} [1-9]/);
      await collector.start(port);
      await until('decisions served again', async () => (await s.send([check(6000)]))[0]?.decision?.verdict === Verdict.VERDICT_ALLOW);
      expect(collector.lines().length).toBeGreaterThan(50);
    } finally {
      s.close();
    }
  });
});
