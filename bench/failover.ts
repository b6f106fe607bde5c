// Issue 12: failover time as a sidecar sees it. Three control-plane replicas on one etcd, two real
// sidecars given all three addresses, a closed loop of allowed calls (8 workers) through them. The
// busiest replica is then SIGKILLed (its sockets close at once) and, in a second round on a fresh
// set, SIGSTOPped (it hangs: only the per-check deadline, authzTimeout, and HTTP/2 keepalive find
// out). For each: calls failed (503, fail closed), the longest call under way at the fault, and the
// time from the fault until throughput is back to 80 % of the rate before it (250 ms windows).
// Prints a table; appends it to bench/README.md unless AIRLOCK_BENCH_WRITE=0.
// Run: node bench/failover.ts
import { Agent, request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEtcd } from '../test/support/etcd.ts';
import { writeSharedCa } from '../test/support/replicas.ts';
import { publishReport, startApp, startControlPlane, startSidecars, type ControlPlane } from './chain.ts';

const WORKERS = 8;
const BEFORE_MS = 3000;
const AFTER_MS = 4000;
const WINDOW_MS = 250;

interface Call {
  readonly startedAt: number;
  readonly endedAt: number;
  readonly status: number;
}

/** One GET through the planner's sidecar (absolute-form, kept alive), its status or 0 on a socket error. */
function get(agent: Agent, port: number): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: 'http://researcher.bench/v1/search', headers: { host: 'researcher.bench' }, agent, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

async function round(fault: 'SIGKILL' | 'SIGSTOP'): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-failover-'));
  const etcd = await startEtcd(1);
  const stops: (() => Promise<void>)[] = [];
  try {
    writeSharedCa(dir);
    const env = {
      AIRLOCK_STORE: `etcd://${etcd.endpoints.map((e) => e.replace('http://', '')).join(',')}`,
      AIRLOCK_CA_CERT_FILE: join(dir, 'tls.crt'),
      AIRLOCK_CA_KEY_FILE: join(dir, 'tls.key'),
      AIRLOCK_CA_BUNDLE_FILE: join(dir, 'ca.crt'),
    };
    const replicas: ControlPlane[] = [];
    for (let i = 0; i < 3; i++) {
      const cp = await startControlPlane(mkdtempSync(join(dir, `replica-${i}-`)), env);
      replicas.push(cp);
      stops.push(async () => {
        if (cp.pid !== undefined) process.kill(cp.pid, 'SIGCONT');
        await cp.stop();
      });
    }
    const first = { ...(replicas[0] as ControlPlane), grpcAddresses: replicas.map((r) => `127.0.0.1:${r.grpcPort}`).join(',') };
    const app = await startApp();
    stops.push(() => app.stop());
    const { planner, researcher } = await startSidecars(dir, first, app.port, 'stream', {}, 'failover');
    stops.push(() => planner.stop(), () => researcher.stop());

    const agent = new Agent({ keepAlive: true, maxSockets: WORKERS });
    const calls: Call[] = [];
    let running = true;
    const workers = Array.from({ length: WORKERS }, async () => {
      while (running) {
        const startedAt = performance.now();
        const status = await get(agent, planner.outbound);
        calls.push({ startedAt, endedAt: performance.now(), status });
      }
    });
    await sleep(BEFORE_MS);
    // The busiest replica: the one that decided most so far.
    const decided = await Promise.all(replicas.map(async (r) => decisionsOf(await (await fetch(`http://127.0.0.1:${r.httpPort}/metrics`)).text())));
    const victim = replicas[decided.indexOf(Math.max(...decided))] as ControlPlane;
    const faultAt = performance.now();
    process.kill(victim.pid ?? 0, fault);
    await sleep(AFTER_MS);
    running = false;
    await Promise.all(workers);
    agent.destroy();

    const before = calls.filter((c) => c.endedAt < faultAt && c.startedAt > faultAt - (BEFORE_MS - 1000));
    const rateBefore = before.length / ((BEFORE_MS - 1000) / 1000);
    const failed = calls.filter((c) => c.endedAt >= faultAt && c.status !== 200);
    const spanning = calls.filter((c) => c.startedAt <= faultAt && c.endedAt >= faultAt);
    const longest = Math.max(0, ...spanning.map((c) => c.endedAt - c.startedAt));
    let recoveredMs = NaN;
    for (let t = faultAt; t + WINDOW_MS <= faultAt + AFTER_MS; t += WINDOW_MS / 5) {
      const ok = calls.filter((c) => c.status === 200 && c.endedAt >= t && c.endedAt < t + WINDOW_MS).length;
      if (ok / (WINDOW_MS / 1000) >= 0.8 * rateBefore) {
        recoveredMs = t + WINDOW_MS - faultAt;
        break;
      }
    }
    const lastFailure = Math.max(0, ...failed.map((c) => c.endedAt - faultAt));
    const byStatus = Object.entries(Object.groupBy(failed, (c) => (c.status === 0 ? 'socket error' : String(c.status))))
      .map(([status, of]) => `${status}: ${of?.length ?? 0}`)
      .join(', ');
    return `| ${fault} the busiest of 3 | ${rateBefore.toFixed(0)} | ${failed.length} of ${calls.filter((c) => c.endedAt >= faultAt).length}${byStatus === '' ? '' : ` (${byStatus})`} | ${lastFailure.toFixed(0)} | ${longest.toFixed(0)} | ${Number.isNaN(recoveredMs) ? `not within ${AFTER_MS} ms` : recoveredMs.toFixed(0)} |`;
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function decisionsOf(page: string): number {
  return page
    .split('\n')
    .filter((l) => l.startsWith('airlock_authz_decisions_total{'))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

async function main(): Promise<void> {
  const rows = [await round('SIGKILL'), await round('SIGSTOP')];
  const report = [
    `### ${new Date().toISOString().slice(0, 10)} — failover seen by a sidecar — ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}`,
    '',
    `Load average at start: ${loadavg().map((l) => l.toFixed(2)).join(', ')}. Three replicas (CPU 0) on one etcd 3.4 member, planner → researcher sidecars given all three addresses (authzTimeout 250 ms, the default), ${WORKERS} workers calling back to back through the planner's sidecar; the replica that had decided most is hit after ${BEFORE_MS / 1000} s. A failed call is 503 (fail closed; its statuses are listed): none is let through.`,
    '',
    '| fault | calls/s before | calls failed after the fault | last failure, ms after the fault | longest call under way at the fault, ms | back to 80 % of the rate, ms after the fault |',
    '|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
  publishReport(report);
}

await main();
