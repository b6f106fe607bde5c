import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createRootLogger } from '@airlock/common/logging';
import { createRegistry } from '@airlock/common/telemetry';
import type { Registry } from 'prom-client';
import { Collector, until } from '../testing/audit-collector.ts';
import { httpTransport } from './http-transport.ts';
import { createAuditSinkMetrics, SpooledAuditSink, type SpooledSinkOptions } from './spooled-sink.ts';

const event = (i: number): string => JSON.stringify({ kind: 'decision', seq: i, pad: 'x'.repeat(80) });

describe('the HTTP audit sink', () => {
  let dir: string;
  let collector: Collector;
  let registry: Registry;
  const sinks: SpooledAuditSink[] = [];
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-sink-'));
    collector = new Collector();
    await collector.start();
    registry = createRegistry('control-plane');
  });
  afterEach(async () => {
    for (const s of sinks.splice(0)) await s.close();
    await collector.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const metric = async (name: string, labels: Record<string, string> = {}): Promise<number> =>
    (await registry.getSingleMetric(name)?.get())?.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0) ?? 0;
  const sink = (o: Partial<SpooledSinkOptions> & { tokenFile?: string } = {}, metrics = createAuditSinkMetrics(registry)): SpooledAuditSink => {
    const { tokenFile, ...rest } = o;
    const s = new SpooledAuditSink({ transport: httpTransport({ url: `http://127.0.0.1:${collector.port}/bulk`, ...(tokenFile === undefined ? {} : { tokenFile }) }), spoolDir: join(dir, 'spool'), spoolMaxBytes: 1024 * 1024, full: 'drop-oldest', metrics, log: createRootLogger({ process: 't', level: 'silent' }), minBackoffMs: 10, maxBackoffMs: 50, flushMs: 10, batchEvents: 50, ...rest });
    sinks.push(s);
    return s;
  };

  it('delivers every event in order, in batches of JSON lines, with the bearer token of the file as it is at each batch', async () => {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'first-token\n');
    const s = sink({ tokenFile });
    for (let i = 0; i < 120; i++) s.submit(event(i));
    await until('all delivered', () => collector.lines().length === 120);
    writeFileSync(tokenFile, 'second-token');
    s.submit(event(120));
    await until('the last delivered', () => collector.lines().length === 121);
    expect(collector.lines()).toEqual(Array.from({ length: 121 }, (_, i) => event(i)));
    expect(collector.batches.length).toBeGreaterThanOrEqual(3); // 50 per batch at most
    expect(collector.batches[0]?.token).toBe('Bearer first-token');
    expect(collector.batches.at(-1)?.token).toBe('Bearer second-token');
    expect(await metric('airlock_audit_events_delivered_total')).toBe(121);
    await until('the spool empty', async () => (await metric('airlock_audit_spool_bytes')) === 0);
  });

  it('loses nothing through a collector outage: the spool holds the gap, retried with backoff, delivered in order once it is back', async () => {
    const s = sink();
    for (let i = 0; i < 10; i++) s.submit(event(i));
    await until('the first delivered', () => collector.lines().length === 10);
    const port = collector.port;
    await collector.stop();
    for (let i = 10; i < 300; i++) s.submit(event(i));
    await until('the gap spooled', async () => (await metric('airlock_audit_spool_bytes')) > 290 * 90);
    await collector.start(port);
    await until('the gap delivered', () => collector.lines().length === 300);
    expect(collector.lines()).toEqual(Array.from({ length: 300 }, (_, i) => event(i)));
    expect(await metric('airlock_audit_events_dropped_total')).toBe(0);
  });

  it('keeps the spool across a restart of the control plane: the next start delivers what the last could not', async () => {
    collector.status = 503;
    const first = sink();
    for (let i = 0; i < 40; i++) first.submit(event(i));
    await first.close();
    sinks.splice(0);
    collector.status = 200;
    sink({}, createAuditSinkMetrics(createRegistry('again')));
    await until('the backlog delivered', () => collector.lines().length === 40);
    expect(collector.lines()).toEqual(Array.from({ length: 40 }, (_, i) => event(i)));
  });

  it('drop-oldest: with the spool full the oldest events go, counted; what is delivered plus what is counted is every event', async () => {
    const port = collector.port;
    await collector.stop();
    const s = sink({ spoolMaxBytes: 8192 });
    const total = 400;
    for (let i = 0; i < total; i++) s.submit(event(i));
    const dropped = await metric('airlock_audit_events_dropped_total', { reason: 'spool_full' });
    expect(dropped).toBeGreaterThan(0);
    expect(s.accepting()).toBe(true);
    await collector.start(port);
    await until('the rest delivered', () => collector.lines().length === total - dropped);
    // The newest survive, in order.
    expect(collector.lines()).toEqual(Array.from({ length: total - dropped }, (_, i) => event(dropped + i)));
  });

  it('a spool that cannot be written loses the events, counted, never throwing into the decision; fail-closed then refuses', async () => {
    const metrics = createAuditSinkMetrics(registry);
    for (const full of ['drop-oldest', 'fail-closed'] as const) {
      const spoolDir = join(dir, `broken-${full}`);
      const s = sink({ spoolDir, full }, metrics);
      // The spool's directory replaced by a file: every write fails (permissions would not stop root).
      rmSync(spoolDir, { recursive: true, force: true });
      writeFileSync(spoolDir, 'not a directory');
      // Enough to fill the write buffer: some writes happen within submit, others on the flush tick.
      for (let i = 0; i < 1000; i++) expect(() => s.submit(event(i))).not.toThrow();
      await until('counted', async () => (await metric('airlock_audit_events_dropped_total', { reason: 'spool_error' })) >= (full === 'drop-oldest' ? 1000 : 2000));
      expect(s.accepting()).toBe(full === 'drop-oldest');
    }
  });

  it('fail-closed: with the spool full new events are refused, counted, and accepting() is false until it drains', async () => {
    const port = collector.port;
    await collector.stop();
    const s = sink({ spoolMaxBytes: 8192, full: 'fail-closed' });
    let n = 0;
    while (s.accepting()) s.submit(event(n++));
    // The last did not fit: refused, counted, and from then on accepting() is false.
    expect(n).toBeGreaterThan(50);
    expect(await metric('airlock_audit_events_dropped_total', { reason: 'spool_full' })).toBe(1);
    await collector.start(port);
    await until('drained', () => s.accepting() && collector.lines().length === n - 1);
    expect(collector.lines()).toEqual(Array.from({ length: n - 1 }, (_, i) => event(i)));
  });
});
