// npm run bench: in one run, req/s and p50/p99 of
//   direct            wrk → echo app
//   stub              wrk → planner's sidecar → mTLS → researcher's sidecar → app, authorization stubbed in-process
//   unary             the same chain, one grpc-js unary Authorize per decision (both ends)
//   stream            the same chain, decisions as messages on one long-lived stream per sidecar (both ends)
// at several concurrency levels. Servers are pinned to CPU 0 and wrk to CPU 1 (taskset), as in
// ../shared/PERF-NOTES.md. Appends its tables to bench/README.md (AIRLOCK_BENCH_WRITE=0 not to).
import { readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { CLIENT_CPU, SERVER_CPU, rssMb, run, startApp, startControlPlane, startSidecars, wrk, type AuthzVariant, type WrkResult } from './chain.ts';

const DURATION = process.env.AIRLOCK_BENCH_DURATION ?? '8s';
const WARMUP = process.env.AIRLOCK_BENCH_WARMUP ?? '5s';
const CONNECTIONS = (process.env.AIRLOCK_BENCH_CONNECTIONS ?? '1,16,64').split(',').map(Number);
const VARIANTS: readonly AuthzVariant[] = ['stub', 'unary', 'stream'];

/** Mean of a histogram on a /metrics page: `<name>_sum / <name>_count` for one label set (all series when label is ''). */
async function histogramMean(url: string, name: string, label: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const pick = (suffix: string): number => Number(new RegExp(`^${name}_${suffix}(?:\\{[^}]*${label}[^}]*\\})? ([\\d.e+-]+)$`, 'm').exec(text)?.[1]);
  return pick('sum') / pick('count');
}

async function counter(url: string, name: string): Promise<number> {
  const text = await (await fetch(url)).text();
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([\\d.e+-]+)$`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const fmt = (r: WrkResult): string => `${r.p50ms.toFixed(2)} / ${r.p99ms.toFixed(2)}`;

async function main(): Promise<void> {
  for (const tool of ['wrk', 'taskset']) {
    try {
      await run('which', [tool]);
    } catch {
      console.error(`bench: ${tool} is missing: apt-get install -y ${tool === 'wrk' ? 'wrk' : 'util-linux'}`);
      process.exit(2);
    }
  }
  try {
    await run('which', ['nginx']);
    console.log('bench: nginx is installed, but the nginx comparison chain is not built yet (see bench/README.md).');
  } catch {
    console.log('bench: no nginx comparison chain in this run (it is not built yet; it will need Debian\'s nginx: apt-get install -y nginx-light).');
  }
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-'));
  const stops: (() => Promise<void>)[] = [];
  try {
    const app = await startApp();
    stops.push(() => app.stop());
    const cp = await startControlPlane(dir);
    stops.push(() => cp.stop());
    const cpMetrics = `http://127.0.0.1:${cp.httpPort}/metrics`;

    const directUrl = `http://127.0.0.1:${app.port}/v1/search`;
    console.log(`warming up the app (${WARMUP})…`);
    await wrk(directUrl, 16, WARMUP, false);
    const direct = new Map<number, WrkResult>();
    for (const c of CONNECTIONS) direct.set(c, await wrk(directUrl, c, DURATION, false));

    const results = new Map<string, WrkResult>();
    const notes: string[] = [];
    for (const variant of VARIANTS) {
      const { planner, researcher } = await startSidecars(dir, cp, app.port, variant);
      try {
        const idle = { planner: rssMb(planner.pid, 'VmRSS'), researcher: rssMb(researcher.pid, 'VmRSS') };
        const proxyUrl = `http://127.0.0.1:${planner.outbound}/`;
        console.log(`${variant}: warming up (${WARMUP})…`);
        await wrk(proxyUrl, 16, WARMUP, true);
        for (const c of CONNECTIONS) {
          const decisionsBefore = await counter(cpMetrics, 'airlock_authz_decisions_total');
          const cpuBefore = cpuSeconds(cp.pid);
          const r = await wrk(proxyUrl, c, DURATION, true);
          results.set(`${variant}/${c}`, r);
          const decisions = (await counter(cpMetrics, 'airlock_authz_decisions_total')) - decisionsBefore;
          const cpCpu = cpuSeconds(cp.pid) - cpuBefore;
          const d = direct.get(c);
          console.log(`${variant} c=${c}: ${r.rps.toFixed(0)} req/s, p50/p99 ${fmt(r)} ms (direct ${d === undefined ? '?' : fmt(d)}), errors ${r.errors}`);
          if (variant !== 'stub' && decisions > 0) {
            notes.push(`${variant}, ${c} connections: the control plane used ${((cpCpu * 1e6) / decisions).toFixed(0)} µs of CPU per decision (${(decisions / cpCpu).toFixed(0)} decisions per CPU-second, gRPC and TLS included).`);
          }
        }
        const peak = { planner: rssMb(planner.pid, 'VmHWM'), researcher: rssMb(researcher.pid, 'VmHWM') };
        notes.push(`${variant}: sidecar RSS idle ${idle.planner.toFixed(0)} / ${idle.researcher.toFixed(0)} MB (planner egress / researcher ingress), peak ${peak.planner.toFixed(0)} / ${peak.researcher.toFixed(0)} MB.`);
        if (variant !== 'stub') {
          const out = await histogramMean(`http://127.0.0.1:${planner.admin}/metrics`, 'airlock_sidecar_authz_duration_seconds', 'direction="outbound"');
          const inb = await histogramMean(`http://127.0.0.1:${researcher.admin}/metrics`, 'airlock_sidecar_authz_duration_seconds', 'direction="inbound"');
          let batch = '';
          if (variant === 'stream') {
            const bo = await histogramMean(`http://127.0.0.1:${planner.admin}/metrics`, 'airlock_sidecar_authz_batch_checks', '');
            const bi = await histogramMean(`http://127.0.0.1:${researcher.admin}/metrics`, 'airlock_sidecar_authz_batch_checks', '');
            batch = `; mean checks per message ${bo.toFixed(1)} (egress) / ${bi.toFixed(1)} (ingress)`;
          }
          notes.push(`${variant}: mean decision round trip seen by the sidecars ${(out * 1000).toFixed(2)} ms (egress) / ${(inb * 1000).toFixed(2)} ms (ingress), warm-up included${batch}.`);
        }
      } finally {
        await planner.stop();
        await researcher.stop();
      }
    }
    const decide = await histogramMean(cpMetrics, 'airlock_authz_decision_duration_seconds', '');
    notes.push(`The decision itself (policy, registry, audit line) takes ${(decide * 1e6).toFixed(0)} µs on average in the control plane.`);

    const rows: string[] = [];
    for (const c of CONNECTIONS) {
      const d = direct.get(c);
      if (d === undefined) continue;
      rows.push(`| ${c} | direct | ${d.rps.toFixed(0)} | ${fmt(d)} | — | — | 1.00 | ${d.errors} |`);
      const stub = results.get(`stub/${c}`);
      for (const variant of VARIANTS) {
        const r = results.get(`${variant}/${c}`);
        if (r === undefined) continue;
        const toStub = stub === undefined ? '—' : (r.rps / stub.rps).toFixed(2);
        rows.push(`| ${c} | ${variant} | ${r.rps.toFixed(0)} | ${fmt(r)} | +${(r.p50ms - d.p50ms).toFixed(2)} / +${(r.p99ms - d.p99ms).toFixed(2)} | ${toStub} | ${(r.rps / d.rps).toFixed(3)} | ${r.errors} |`);
      }
    }
    const report = [
      `### ${new Date().toISOString().slice(0, 10)} — ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}`,
      '',
      `wrk 1 thread on CPU ${CLIENT_CPU}; app, control plane and both sidecars on CPU ${SERVER_CPU}; ${DURATION} per point after a ${WARMUP} warm-up per variant; ~150-byte JSON responses. Chains: stub = authorization stubbed in-process at both sidecars; unary = one grpc-js unary Authorize per decision; stream = decisions as messages on one long-lived stream per sidecar, calls of one event-loop turn coalesced. Both sidecars decide every call (two fresh decisions per request) except in stub.`,
      '',
      '| connections | chain | req/s | p50 / p99 ms | added p50 / p99 ms | × stub | × direct | errors |',
      '|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
      ...notes.map((n) => `- ${n}`),
    ].join('\n');
    console.log(`\n${report}\n`);
    if (process.env.AIRLOCK_BENCH_WRITE !== '0') {
      const readmePath = join(import.meta.dirname, 'README.md');
      const readme = readFileSync(readmePath, 'utf8');
      const marker = '<!-- results: newest first -->';
      writeFileSync(readmePath, readme.replace(marker, `${marker}\n\n${report}\n`));
      console.log('results added to bench/README.md');
    }
  } finally {
    for (const stop of stops.reverse()) await stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
