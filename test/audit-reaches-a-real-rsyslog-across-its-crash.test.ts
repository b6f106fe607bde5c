// A real control plane ships its audit trail to Debian's rsyslogd over TLS (RFC 5424, RFC 5425
// framing, the collector verified against a CA file). rsyslogd is frozen with events sent to it,
// then killed (a crash: what it had read but not written is lost) and started again: every event of
// the run reaches its file all the same, the lost ones resent after the reconnect (deduplicated by
// event id). A collector whose certificate the control plane does not trust is never sent an event:
// they stay in the spool, counted.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuthorizeRequest, Direction, Verdict, type AuthorizeCheck } from '@airlock/proto/authorization/v1';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { until } from '../control-plane/src/testing/audit-collector.ts';
import { auditEventsOf, auditSchemaProblems } from '../control-plane/src/testing/audit-events.ts';
import { openAuthorizeStream, RESEARCHER, RESEARCHERS_TO_EXAMPLE, startTestControlPlane, type TestAuthorizeStream, type TestControlPlane } from '../control-plane/src/testing/test-control-plane.ts';
import { createTestCa, type TestCa } from '../sidecar/src/testing/certs.ts';
import { freePort } from './support/ports.ts';
import { startRsyslog, type Rsyslog } from './support/rsyslog.ts';

const check = (id: number): AuthorizeCheck => ({
  id,
  request: AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: RESEARCHER, destinationHost: 'api.example.com', destinationPort: 443, method: 'CONNECT' }),
});

/** One line of rsyslog's file: the RFC 5424 header fields and the event (MSG, JSON). */
interface Received {
  readonly pri: number;
  readonly hostname: string;
  readonly appName: string;
  readonly msgId: string;
  readonly event: Record<string, unknown>;
}

function parse(line: string): Received {
  const m = /^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-) (.*)$/.exec(line);
  if (m === null) throw new Error(`not RFC 5424: ${line.slice(0, 200)}`);
  return { pri: Number(m[1]), hostname: m[3] ?? '', appName: m[4] ?? '', msgId: m[6] ?? '', event: JSON.parse((m[8] ?? '').trimStart()) as Record<string, unknown> };
}

describe('the syslog audit sink with a real rsyslog', () => {
  let dir: string;
  let ca: TestCa;
  let rsyslog: Rsyslog | undefined;
  let t: TestControlPlane | undefined;
  let s: TestAuthorizeStream | undefined;
  beforeEach(() => {
    decided = 0;
    dir = mkdtempSync(join(tmpdir(), 'airlock-rsyslog-'));
    ca = createTestCa('SIEM CA');
    writeFileSync(join(dir, 'siem-ca.pem'), ca.certPem);
  });
  afterEach(async () => {
    s?.close();
    s = undefined;
    await t?.close();
    t = undefined;
    await rsyslog?.kill();
    rsyslog = undefined;
    rmSync(dir, { recursive: true, force: true });
  });
  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${t?.cp.httpPort ?? 0}/metrics`)).text();
    const m = new RegExp(`^${name}\\{sink="syslog"[^}]*\\} (\\d+)$`, 'm').exec(text);
    return Number(m?.[1] ?? 0);
  };
  const startControlPlane = async (port: number, flags: Record<string, string> = {}): Promise<TestControlPlane> =>
    startTestControlPlane(RESEARCHERS_TO_EXAMPLE, 'airlock-rsyslog-cp-', {}, { replicaName: 'cp-syslog-0', auditSyslogAddress: `127.0.0.1:${port}`, auditSyslogCaFile: join(dir, 'siem-ca.pem'), auditSyslogServerName: 'siem.test', auditCheckpointEvery: '50', ...flags });
  let decided = 0;
  const decide = async (n: number): Promise<void> => {
    for (let m = 0; m < n; m++) {
      const results = await (s as TestAuthorizeStream).send(Array.from({ length: 10 }, (_, i) => check(decided + i)));
      expect(results.every((r) => r.decision?.verdict === Verdict.VERDICT_ALLOW)).toBe(true);
      decided += results.length;
    }
  };

  // The bound of `until` (a minute), not the default 30 s: a missing event fails naming what never came.
  it('receives every event of the run, once deduplicated by id, though rsyslogd crashed with events in flight and was restarted', { timeout: 90_000 }, async () => {
    const port = await freePort();
    rsyslog = await startRsyslog(join(dir, 'rsyslog'), port, ca.issue({ dnsNames: ['siem.test'] }), ca.certPem);
    t = await startControlPlane(port);
    s = openAuthorizeStream(t.cp, t.svid(RESEARCHER));
    const logs = t.logs;
    const received = (): Received[] => (rsyslog as Rsyslog).lines().map(parse);
    const receivedIds = (): Set<unknown> => new Set(received().map((r) => r.event.id));

    await decide(10);
    await until('the first events received', () => receivedIds().size >= decided);

    // Frozen: the sink's writes still succeed (the kernel takes them), nothing is read.
    rsyslog.pause();
    await decide(10);
    await until('the sink counts them delivered', async () => (await metric('airlock_audit_events_delivered_total')) >= auditEventsOf(logs).length);
    // Crashed with them unread: without a resend they are gone.
    await rsyslog.kill();
    await decide(10);
    await until('the events while it is down spooled', async () => (await metric('airlock_audit_spool_bytes')) > 0);
    await rsyslog.restart();
    await decide(10);

    // Events recorded while a checkpoint is signed (on the thread pool) are written just after it.
    await until('every decision written', () => auditEventsOf(logs).filter((e) => e.kind === 'decision').length >= decided);
    const decisions = auditEventsOf(logs).filter((e) => e.kind === 'decision');
    expect(decisions).toHaveLength(decided);
    await until('every event received', () => receivedIds().size >= auditEventsOf(logs).length);
    const all = received();
    // The count of distinct decision events received is the count of decisions.
    expect(new Set(all.filter((r) => r.event.kind === 'decision').map((r) => r.event.id)).size).toBe(decided);
    expect(receivedIds()).toEqual(new Set(auditEventsOf(logs).map((e) => e.id)));
    // Resent after the reconnect: some arrived twice, each copy the same event.
    expect(all.length).toBeGreaterThan(receivedIds().size);
    const byId = new Map(auditEventsOf(logs).map((e) => [e.id, e]));
    for (const r of all) {
      expect(r.event).toEqual(byId.get(r.event.id));
      expect(r.event.schemaVersion).toBe(1);
      expect(auditSchemaProblems(r.event)).toEqual([]);
      expect(r.appName).toBe('airlock');
      expect(r.hostname).toBe('cp-syslog-0');
      expect(r.msgId).toBe(r.event.kind);
      // Facility 10 (security/authorization), severity info for an allow.
      if (r.event.kind === 'decision') expect(r.pri).toBe(10 * 8 + 6);
    }
    expect(await metric('airlock_audit_events_dropped_total')).toBe(0);
  });

  it('never sends an event to a collector whose certificate it does not trust: they stay spooled, counted', async () => {
    const port = await freePort();
    // A real rsyslogd, its certificate from another CA (it names siem.test all the same).
    rsyslog = await startRsyslog(join(dir, 'rsyslog'), port, createTestCa('Impostor CA').issue({ dnsNames: ['siem.test'] }), ca.certPem);
    t = await startControlPlane(port);
    s = openAuthorizeStream(t.cp, t.svid(RESEARCHER));
    await decide(5);
    // rsyslogd sees each attempt end in the handshake (the control plane hangs up on its certificate).
    const cutOff = (): number => ((rsyslog as Rsyslog).internal().match(/netstream session \S+ from 127\.0\.0\.1 will be closed due to error/g) ?? []).length;
    await until('tried more than once, each time cut off (or, wrongly, received)', () => cutOff() >= 2 || (rsyslog as Rsyslog).lines().length > 0);
    expect(rsyslog.lines()).toEqual([]);
    expect(await metric('airlock_audit_events_delivered_total')).toBe(0);
    expect(await metric('airlock_audit_spool_bytes')).toBeGreaterThan(0);
    expect(await metric('airlock_audit_events_dropped_total')).toBe(0);
  });

  it('presents its client certificate to a collector that requires one; without one, or with one it refuses, writes nothing: the spool keeps it for the fixed config', { timeout: 90_000 }, async () => {
    const port = await freePort();
    rsyslog = await startRsyslog(join(dir, 'rsyslog'), port, ca.issue({ dnsNames: ['siem.test'] }), ca.certPem, { requireClientCertificate: true });
    const refused = (): number => ((rsyslog as Rsyslog).internal().match(/not permitted to talk to/g) ?? []).length;
    // One data dir for the three runs: what the first two spooled is delivered by the third.
    const dataDir = join(dir, 'cp-data');
    const events: Record<string, unknown>[] = [];
    const impostor = createTestCa('Another client CA').issue({ dnsNames: ['cp.airlock.test'] });
    const client = ca.issue({ dnsNames: ['cp.airlock.test'] });
    for (const [name, cert] of [['impostor', impostor], ['client', client]] as const) {
      writeFileSync(join(dir, `${name}.pem`), cert.certPem);
      writeFileSync(join(dir, `${name}.key`), cert.keyPem);
    }
    // rsyslogd checks the client only after the handshake, then hangs up: the sink waits for that
    // before writing, so nothing is written (it would be discarded, and counted delivered).
    for (const flags of [{}, { auditSyslogCertFile: join(dir, 'impostor.pem'), auditSyslogKeyFile: join(dir, 'impostor.key') }] as Record<string, string>[]) {
      t = await startControlPlane(port, { dataDir, ...flags });
      s = openAuthorizeStream(t.cp, t.svid(RESEARCHER));
      await decide(2);
      const before = refused();
            await until('refused more than once (or, wrongly, received)', () => refused() >= before + 2 || (rsyslog as Rsyslog).lines().length > 0);
      expect(rsyslog.lines()).toEqual([]);
      expect(await metric('airlock_audit_events_delivered_total')).toBe(0);
      expect(await metric('airlock_audit_spool_bytes')).toBeGreaterThan(0);
      events.push(...auditEventsOf(t.logs));
      s.close();
      await t.close();
    }
    // With the certificate it trusts: every event arrives, those of the runs before from the spool.
    t = await startControlPlane(port, { dataDir, auditSyslogCertFile: join(dir, 'client.pem'), auditSyslogKeyFile: join(dir, 'client.key') });
    s = openAuthorizeStream(t.cp, t.svid(RESEARCHER));
    await decide(3);
    const logs = t.logs;
    await until('every event of the three runs received', () => {
      const ids = new Set(rsyslog?.lines().map((l) => parse(l).event.id));
      return [...events, ...auditEventsOf(logs)].every((e) => ids.has(e.id));
    });
    expect(new Set(rsyslog.lines().map(parse).filter((r) => r.event.kind === 'decision').map((r) => r.event.id)).size).toBe(decided);
    expect(decided).toBe(70);
  });
});
