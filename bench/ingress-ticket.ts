// node bench/ingress-ticket.ts: what admitting a call on its ticket saves the ingress. The same
// chain (wrk → planner's sidecar → mTLS → researcher's sidecar → app, decisions on the stream
// transport) twice: `stream`, where researcher's sidecar admits each call on the ticket the egress
// decision carried, and `stream-round-trip` (bench/round-trip-sidecar.ts), where it asks the control
// plane for every call as before tickets. Per point: req/s, p50 / p99, the ingress sidecar's CPU per
// call, the control plane's decisions and CPU per call, and the share of calls admitted on a ticket.
// Pinned as run.ts (servers on CPU 0, wrk on CPU 1). Run by run.ts; alone: AIRLOCK_BENCH_WRITE=0 to only print.
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { counter, cpuSeconds, publishReport, startApp, startControlPlane, startSidecars, wrk, type AuthzVariant } from './chain.ts';

const DURATION = process.env.AIRLOCK_BENCH_DURATION ?? '8s';
const WARMUP = process.env.AIRLOCK_BENCH_WARMUP ?? '5s';
const CONNECTIONS = (process.env.AIRLOCK_BENCH_CONNECTIONS ?? '1,16,64').split(',').map(Number);
const VARIANTS: readonly AuthzVariant[] = ['stream', 'stream-round-trip'];

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-ticket-'));
  const stops: (() => Promise<void>)[] = [];
  const rows: string[] = [];
  const loadAtStart = loadavg().map((l) => l.toFixed(2)).join(', ');
  try {
    const app = await startApp();
    stops.push(() => app.stop());
    const cp = await startControlPlane(dir);
    stops.push(() => cp.stop());
    const cpMetrics = `http://127.0.0.1:${cp.httpPort}/metrics`;
    for (const variant of VARIANTS) {
      const { planner, researcher } = await startSidecars(dir, cp, app.port, variant);
      const ingressMetrics = `http://127.0.0.1:${researcher.admin}/metrics`;
      try {
        const proxyUrl = `http://127.0.0.1:${planner.outbound}/`;
        console.log(`${variant}: warming up (${WARMUP})…`);
        await wrk(proxyUrl, 16, WARMUP, true);
        for (const c of CONNECTIONS) {
          const before = {
            ingressCpu: cpuSeconds(researcher.pid),
            cpCpu: cpuSeconds(cp.pid),
            decisions: await counter(cpMetrics, 'airlock_authz_decisions_total'),
            admitted: await counter(ingressMetrics, 'airlock_sidecar_ticket_admissions_total'),
            calls: await counter(ingressMetrics, 'airlock_sidecar_requests_total'),
          };
          const r = await wrk(proxyUrl, c, DURATION, true);
          // The calls the ingress served over the point (wrk's count leaves out those in flight at its end).
          const calls = (await counter(ingressMetrics, 'airlock_sidecar_requests_total')) - before.calls;
          const perCall = (seconds: number): string => ((seconds * 1e6) / calls).toFixed(0);
          const decisions = (await counter(cpMetrics, 'airlock_authz_decisions_total')) - before.decisions;
          const admitted = (await counter(ingressMetrics, 'airlock_sidecar_ticket_admissions_total')) - before.admitted;
          const row = `| ${c} | ${variant} | ${r.rps.toFixed(0)} | ${r.p50ms.toFixed(2)} / ${r.p99ms.toFixed(2)} | ${perCall(cpuSeconds(researcher.pid) - before.ingressCpu)} | ${(decisions / calls).toFixed(2)} | ${perCall(cpuSeconds(cp.pid) - before.cpCpu)} | ${((100 * admitted) / calls).toFixed(0)} % | ${r.errors} |`;
          console.log(row);
          rows.push(row);
        }
      } finally {
        await planner.stop();
        await researcher.stop();
      }
    }
  } finally {
    for (const stop of stops.reverse()) await stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const report = [
    `### ${new Date().toISOString().slice(0, 10)} — ingress with a ticket vs with a round trip — ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}`,
    '',
    `Load average at start: ${loadAtStart}. The stream chain, ${DURATION} per point after a ${WARMUP} warm-up; servers on CPU 0, wrk on CPU 1. CPU per call from /proc (user + system, all threads) over the point, divided by the calls the ingress served.`,
    '',
    '| connections | ingress | req/s | p50 / p99 ms | ingress sidecar CPU µs per call | control-plane decisions per call | control-plane CPU µs per call | admitted on a ticket | errors |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
  publishReport(report);
}

await main();
