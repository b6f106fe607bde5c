// Issue 16 item 4 (faults): the disk under the audit spool (dataDir/audit-spool, the HTTP sink's)
// fills up while calls flow. The spool directory is a 1 MiB tmpfs in the control plane's own mount
// namespace (nothing leaks to the host), filled to the last byte through /proc/<pid>/root. With
// drop-oldest, decisions go on and the events that cannot be written are lost, counted; with
// fail-closed, calls are refused while events cannot be written. Once space is freed, events are
// written and delivered again, without a restart, and nothing half-written reaches the collector.
import { readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Collector, until } from '../control-plane/src/testing/audit-collector.ts';
import { fillToTheLastByte } from './support/full-disk.ts';
import { startMesh, type Mesh } from './support/mesh.ts';
import { AGENTS, STANDARD_POLICY } from './support/standard-mesh.ts';

/**
 * Runs the control plane with a 1 MiB tmpfs over `<its --data-dir>/audit-spool`, in a mount
 * namespace of its own (the data dir is made by startMesh: the script finds it among the arguments).
 */
const SPOOL_ON_TMPFS = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'prev=; for a in "$@"; do [ "$prev" = --data-dir ] && d="$a"; prev="$a"; done; mkdir -p "$d/audit-spool" && mount -t tmpfs -o size=1m tmpfs "$d/audit-spool" && exec "$@"', 'spool-on-tmpfs'];

async function metric(mesh: Mesh, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${mesh.httpPort}/metrics`)).text();
  const m = new RegExp(`^${name}\\{[^}]*${labels}[^}]*\\} (\\d+)`, 'm').exec(text);
  return Number(m?.[1] ?? 0);
}

/** Every line the collector got is a whole audit event (JSON with an id): nothing half-written was shipped. */
function wholeEvents(collector: Collector): boolean {
  return collector.lines().every((l) => {
    try {
      return typeof (JSON.parse(l) as { id?: unknown }).id === 'string';
    } catch {
      return false;
    }
  });
}

describe.each(['drop-oldest', 'fail-closed'] as const)('a full disk under the audit spool (auditSpoolFull %s)', (policy) => {
  let mesh: Mesh;
  const collector = new Collector();
  /** The spool's directory as the control plane sees it (its mount namespace), from this process. */
  let seen: string;

  beforeAll(async () => {
    await collector.start();
    mesh = await startMesh({
      agents: AGENTS,
      policy: STANDARD_POLICY,
      controlPlaneArgs: ['--audit-http-url', `http://127.0.0.1:${collector.port}/ingest`, '--audit-spool-full', policy],
      controlPlaneWrap: SPOOL_ON_TMPFS,
    });
    seen = `/proc/${String(mesh.controlPlaneProcess()?.child.pid)}/root${mesh.dataDir}/audit-spool`;
  }, 60_000);
  afterAll(async () => {
    await mesh.close();
    await collector.stop();
  });

  const call = async (path: string): Promise<{ status: number; body: string }> => {
    const res = await mesh.call('planner', 'GET', `http://researcher.agents${path}`);
    return { status: res.status, body: res.text };
  };
  const delivered = (path: string): boolean => collector.lines().some((l) => l.includes(path));

  it(policy === 'drop-oldest' ? 'keeps deciding while events cannot be written, counts them lost, and writes and delivers again once space is freed' : 'refuses calls while events cannot be written, counted, and decides again once space is freed', { timeout: 90_000 }, async () => {
    expect((await call('/v1/before')).status).toBe(200);
    await until('the event delivered', () => delivered('/v1/before'));

    const filler = fillToTheLastByte(seen);
    if (policy === 'drop-oldest') {
      // Decisions are made from memory; their events are lost, counted.
      for (let i = 0; i < 20; i++) expect((await call(`/v1/while-full-${i}`)).status).toBe(200);
      await until('the lost events counted', async () => (await metric(mesh, 'airlock_audit_events_dropped_total', 'reason="spool_error"')) >= 1);
    } else {
      // The first event that cannot be written turns decisions off: no call is allowed unaudited.
      await until('calls refused', async () => (await call('/v1/while-full')).status === 503);
      const refused = await call('/v1/while-full');
      expect(refused.status).toBe(503);
      expect(refused.body).toContain('audit events cannot be written');
      expect(await metric(mesh, 'airlock_audit_events_dropped_total', 'reason="spool_error"')).toBeGreaterThanOrEqual(1);
    }
    expect(mesh.controlPlaneProcess()?.child.exitCode).toBeNull();

    // Space comes back: events are written and delivered again, with no restart.
    unlinkSync(filler);
    await until('calls decided again', async () => (await call('/v1/after-free')).status === 200);
    await until('the event after delivered', () => delivered('/v1/after-free'));
    expect(wholeEvents(collector)).toBe(true);
    // The collector answered all along: a disk that cannot be written is not its failure (no retry backoff, no warning blaming it).
    expect(readFileSync(join(mesh.dir, 'control-plane.log'), 'utf8')).not.toContain('audit batch not delivered');
  });
});
