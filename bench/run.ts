// npm run bench: in one run, req/s and p50/p99 of
//   direct            wrk → echo app
//   nginx             wrk → nginx (auth_request per call) → mTLS → nginx → app (the peer; bench/nginx-chain.ts)
//   stub              wrk → planner's sidecar → mTLS → researcher's sidecar → app, authorization stubbed in-process
//   unary             the same chain, one grpc-js unary Authorize per decision (both ends)
//   stream            the same chain, decisions as messages on one long-lived stream per sidecar (both ends)
// at several concurrency levels; then the control plane's decisions/s (bench/decisions-load.ts) and
// the policy engine at 10,000 agents (bench/policy-engine.ts), the audit chain's cost per decision
// (bench/audit-chain.ts), the sidecar's secret scan per request (bench/secret-scan.ts), how fast replicas on etcd follow each
// other (bench/replica-propagation.ts), decisions/s with three of them (bench/replicas-decisions.ts),
// how long a sidecar takes to fail over when one dies or hangs (bench/failover.ts),
// the ingress's cost per call admitted on a ticket vs decided by a round trip (bench/ingress-ticket.ts),
// how fast a quarantine takes effect under continuous traffic (bench/containment.ts),
// an MCP tools/call with an argument rule against the stubbed chain (bench/mcp-chain.ts),
// and the issue's goals against the
// figures. Servers are pinned to CPU 0 and load generators to CPU 1 (taskset), as in
// ../shared/PERF-NOTES.md. Appends its tables to bench/README.md (AIRLOCK_BENCH_WRITE=0 not to).
import { rmSync, mkdtempSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { adminPost } from '../cli/src/admin-client.ts';
import { NGINX_MISSING, nginxAvailable, startNginxChain } from './nginx-chain.ts';
import { CLIENT_CPU, SERVER_CPU, TRUST_DOMAIN, adminCredentials, counter, cpuSeconds, publishReport, rssMb, run, startApp, startControlPlane, startSidecars, wrk, type AuthzVariant, type WrkResult } from './chain.ts';

const DURATION = process.env.AIRLOCK_BENCH_DURATION ?? '8s';
const WARMUP = process.env.AIRLOCK_BENCH_WARMUP ?? '5s';
const CONNECTIONS = (process.env.AIRLOCK_BENCH_CONNECTIONS ?? '1,16,64').split(',').map(Number);
/**
 * The Airlock chains: how the sidecars decide, and where the control plane runs. `stream-apart` is
 * the default transport with the control plane on the load generator's core, as deployed (the
 * control plane runs on other nodes, not on the agent pod's core); the others share the proxies' core.
 */
const CHAINS: readonly { readonly name: string; readonly variant: AuthzVariant; readonly cpCpu: string }[] = [
  { name: 'stub', variant: 'stub', cpCpu: SERVER_CPU },
  { name: 'unary', variant: 'unary', cpCpu: SERVER_CPU },
  { name: 'stream', variant: 'stream', cpCpu: SERVER_CPU },
  { name: 'stream-apart', variant: 'stream', cpCpu: CLIENT_CPU },
];

/** Mean of a histogram on a /metrics page: `<name>_sum / <name>_count` for one label set (all series when label is ''). */
async function histogramMean(url: string, name: string, label: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const pick = (suffix: string): number => Number(new RegExp(`^${name}_${suffix}(?:\\{[^}]*${label}[^}]*\\})? ([\\d.e+-]+)$`, 'm').exec(text)?.[1]);
  return pick('sum') / pick('count');
}

/** A sidecar's memory in MB: RSS and private (RssAnon), idle and after the 64-connection run (the larger of the two sidecars). */
interface SidecarMemory {
  readonly idle: number;
  readonly peak: number;
  readonly privateIdle: number;
  readonly privatePeak: number;
}

const signed = (ms: number): string => `${ms < 0 ? '−' : '+'}${Math.abs(ms).toFixed(2)}`;
const fmt = (r: WrkResult): string => `${r.p50ms.toFixed(2)} / ${r.p99ms.toFixed(2)}`;

/** Issue 11's goals (one decision per call, tickets), each with this run's figure (stream chain unless said). */
function goals(results: Map<string, WrkResult>, direct: Map<number, WrkResult>, memory: Map<string, SidecarMemory>, decisionsPerSecond: number): string[] {
  const rows: string[] = [];
  const ratio = (a: string, b: string, c: number): string => {
    const x = results.get(`${a}/${c}`);
    const y = results.get(`${b}/${c}`);
    return x === undefined || y === undefined ? '—' : (x.rps / y.rps).toFixed(2);
  };
  const at = (cs: readonly number[], a: string, b: string): string => cs.map((c) => `${ratio(a, b, c)} (${c})`).join(', ');
  rows.push(`| chain with real authorization ÷ stubbed chain, 16 and 64 connections | ≥ 0.85× | ${at([16, 64], 'stream', 'stub')}; control plane off the proxies' core: ${at([16, 64], 'stream-apart', 'stub')} |`);
  rows.push(`| the same at 1 connection | ≥ 0.7× | ${at([1], 'stream', 'stub')}; apart: ${at([1], 'stream-apart', 'stub')} |`);
  const added = (variant: string, c: number, which: 'p50ms' | 'p99ms'): number => {
    const r = results.get(`${variant}/${c}`);
    const d = direct.get(c);
    return r === undefined || d === undefined ? NaN : r[which] - d[which];
  };
  rows.push(`| added p50 through both sidecars, 1 connection | ≤ 0.5 ms | ${signed(added('stream', 1, 'p50ms'))} ms (stub ${signed(added('stub', 1, 'p50ms'))} ms) |`);
  const p99 = added('stream', 1, 'p99ms');
  const stubP99 = added('stub', 1, 'p99ms');
  rows.push(`| added p99, 1 connection, ÷ the stubbed chain's | ≤ 1.5× | ${(p99 / stubP99).toFixed(2)}× (${signed(p99)} vs ${signed(stubP99)} ms) |`);
  rows.push(`| vs the nginx chain (auth_request per call), 16 connections | ≥ 0.4× | ${at([16], 'stream', 'nginx')} |`);
  const m = memory.get('stream');
  rows.push(`| sidecar private memory (RssAnon) idle / at 64 connections | ≤ 32 / ≤ 64 MB | ${m === undefined ? '—' : `${m.privateIdle.toFixed(0)} / ${m.privatePeak.toFixed(0)} MB (RSS ${m.idle.toFixed(0)} / ${m.peak.toFixed(0)} MB)`} |`);
  rows.push(`| control plane decisions/s on one core, tickets issued | ≥ 60,000 | ${decisionsPerSecond.toFixed(0)} |`);
  rows.push('| ingress cost per call admitted on a ticket vs a round trip | a row | bench/ingress-ticket.ts (its own table) |');
  rows.push('| a policy change or revocation applies to the very next call under load, calls admitted on tickets | a test | test/policy-change-and-revocation-apply-to-the-next-call-under-load.test.ts |');
  return rows;
}

async function main(): Promise<void> {
  for (const tool of ['wrk', 'taskset']) {
    try {
      await run('which', [tool]);
    } catch {
      console.error(`bench: ${tool} is missing: apt-get install -y ${tool === 'wrk' ? 'wrk' : 'util-linux'}`);
      process.exit(2);
    }
  }
  const withNginx = await nginxAvailable();
  if (!withNginx) console.log(NGINX_MISSING);
  const loadAtStart = loadavg().map((l) => l.toFixed(2)).join(', ');
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
    if (withNginx) {
      const nginx = await startNginxChain(dir, app.port);
      try {
        const nginxUrl = `http://127.0.0.1:${nginx.egressPort}/`;
        console.log(`nginx: warming up (${WARMUP})…`);
        await wrk(nginxUrl, 16, WARMUP, true);
        for (const c of CONNECTIONS) {
          const r = await wrk(nginxUrl, c, DURATION, true);
          results.set(`nginx/${c}`, r);
          console.log(`nginx c=${c}: ${r.rps.toFixed(0)} req/s, p50/p99 ${fmt(r)} ms, errors ${r.errors}`);
        }
        const pids = await nginx.pids();
        const peak = (list: number[]): number => list.reduce((a, pid) => a + rssMb(pid, 'VmHWM'), 0);
        notes.push(`nginx: peak RSS ${peak(pids.egress).toFixed(0)} / ${peak(pids.ingress).toFixed(0)} MB (egress / ingress, master + worker).`);
      } finally {
        await nginx.stop();
      }
    }
    const rss = new Map<string, SidecarMemory>();
    for (const { name: variant, variant: transport, cpCpu } of CHAINS) {
      await run('taskset', ['-a', '-p', '-c', cpCpu, String(cp.pid)]);
      const { planner, researcher } = await startSidecars(dir, cp, app.port, transport, {}, variant);
      try {
        await sleep(1000); // past the collection a sidecar runs once started (idleMemoryRelease)
        const idle = { planner: rssMb(planner.pid, 'VmRSS'), researcher: rssMb(researcher.pid, 'VmRSS') };
        const privateIdle = Math.max(rssMb(planner.pid, 'RssAnon'), rssMb(researcher.pid, 'RssAnon'));
        const proxyUrl = `http://127.0.0.1:${planner.outbound}/`;
        console.log(`${variant}: warming up (${WARMUP})…`);
        await wrk(proxyUrl, 16, WARMUP, true);
        for (const c of CONNECTIONS) {
          const decisionsBefore = await counter(cpMetrics, 'airlock_authz_decisions_total');
          const cpuBefore = cpuSeconds(cp.pid);
          const r = await wrk(proxyUrl, c, DURATION, true);
          results.set(`${variant}/${c}`, r);
          const decisions = (await counter(cpMetrics, 'airlock_authz_decisions_total')) - decisionsBefore;
          const cpCpuSeconds = cpuSeconds(cp.pid) - cpuBefore;
          const d = direct.get(c);
          console.log(`${variant} c=${c}: ${r.rps.toFixed(0)} req/s, p50/p99 ${fmt(r)} ms (direct ${d === undefined ? '?' : fmt(d)}), errors ${r.errors}`);
          if (variant !== 'stub' && decisions > 0) {
            notes.push(`${variant}, ${c} connections: the control plane used ${((cpCpuSeconds * 1e6) / decisions).toFixed(0)} µs of CPU per decision (${(decisions / cpCpuSeconds).toFixed(0)} decisions per CPU-second, gRPC and TLS included).`);
          }
        }
        const peak = { planner: rssMb(planner.pid, 'VmHWM'), researcher: rssMb(researcher.pid, 'VmHWM') };
        // Private memory now, right after the 64-connection run (the kernel keeps no peak of it).
        const privatePeak = Math.max(rssMb(planner.pid, 'RssAnon'), rssMb(researcher.pid, 'RssAnon'));
        rss.set(variant, { idle: Math.max(idle.planner, idle.researcher), peak: Math.max(peak.planner, peak.researcher), privateIdle, privatePeak });
        notes.push(`${variant}: sidecar RSS idle ${idle.planner.toFixed(0)} / ${idle.researcher.toFixed(0)} MB (planner egress / researcher ingress), peak ${peak.planner.toFixed(0)} / ${peak.researcher.toFixed(0)} MB; private (RssAnon) ${privateIdle.toFixed(0)} MB idle, ${privatePeak.toFixed(0)} MB after the last run (the larger sidecar).`);
        if (variant !== 'stub') {
          const out = await histogramMean(`http://127.0.0.1:${planner.admin}/metrics`, 'airlock_sidecar_authz_duration_seconds', 'direction="outbound"');
          const inb = await histogramMean(`http://127.0.0.1:${researcher.admin}/metrics`, 'airlock_sidecar_authz_duration_seconds', 'direction="inbound"');
          let batch = '';
          if (transport === 'stream') {
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

    // Decisions/s: a load generator on the other core, the control plane alone on its core.
    await run('taskset', ['-a', '-p', '-c', SERVER_CPU, String(cp.pid)]);
    const creds = adminCredentials(cp);
    const { token } = (await adminPost(creds, '/v1/join-tokens', { identity: `spiffe://${TRUST_DOMAIN}/ns/bench/sa/planner` })) as { token: string };
    console.log('control plane: decisions/s under a batched stream load…');
    const load = await run('taskset', ['-c', CLIENT_CPU, process.execPath, join(import.meta.dirname, 'decisions-load.ts'), String(cp.grpcPort), join(cp.dataDir, 'ca.pem'), String(cp.pid), DURATION.replace(/s$/, '')], { env: { ...process.env, AIRLOCK_JOIN_TOKEN: token }, timeout: 120_000 });
    const cpLoad = JSON.parse(load.stdout.trim().split('\n').pop() ?? '{}') as { decisionsPerSecond: number; clientCpuSeconds: number; cpCpuSeconds: number; seconds: number; errors: number; meanBatch: number; inFlight: number };
    const cpShare = cpLoad.cpCpuSeconds / cpLoad.seconds;
    notes.push(`Control plane: ${cpLoad.decisionsPerSecond.toFixed(0)} decisions/s on one core (${(cpShare * 100).toFixed(0)} % of it busy; ${(cpLoad.decisionsPerSecond / cpShare).toFixed(0)} decisions per CPU-second), from one AuthorizeStream client on the other core with ${cpLoad.inFlight} checks in flight (mean ${cpLoad.meanBatch.toFixed(0)} checks per message), ${cpLoad.errors} errors; audit line per decision included. The client (the sidecar's stream authorizer) used ${((cpLoad.clientCpuSeconds / (cpLoad.decisionsPerSecond * cpLoad.seconds)) * 1e6).toFixed(1)} µs of CPU per decision.`);
    const decide = await histogramMean(cpMetrics, 'airlock_authz_decision_duration_seconds', '');
    notes.push(`The decision itself (policy, registry, audit line) takes ${(decide * 1e6).toFixed(0)} µs on average in the control plane.`);
    for (const stop of stops.splice(0).reverse()) await stop();

    console.log('policy engine at 10,000 agents…');
    const eng = await run('taskset', ['-c', SERVER_CPU, process.execPath, '--expose-gc', join(import.meta.dirname, 'policy-engine.ts')], { timeout: 600_000, maxBuffer: 1 << 20 });
    const e = JSON.parse(eng.stdout.trim().split('\n').pop() ?? '{}') as Record<string, number>;
    const n = (k: string, d = 0): string => (e[k] ?? NaN).toFixed(d);
    notes.push(`Policy engine (in-process, one core): ${n('agents')} agents, ${n('segments')} segments, ${n('policies')} policies (${n('yamlMb', 1)} MB of YAML): parse + validate ${n('parseMs')} ms, compile ${n('compileMs')} ms (text to engine ${n('textToEngineMs')} ms; goal < 1 s), ${n('retainedMb')} MB of heap retained (documents + engine); decision p50 ${n('decisionP50Us')} µs, p99 ${n('decisionP99Us')} µs (goal < 20 µs), p99.9 ${n('decisionP999Us')} µs (mean ${n('decisionMeanUs', 1)} µs, ${n('decisionBatchMeanUs', 1)} µs timed as one batch; ${(100 * (e.allowedShare ?? NaN)).toFixed(0)} % allowed; ${n('gcsDuringDecisions')} GCs while measuring).`);

    console.log('audit chain cost per decision…');
    const chain = await run('taskset', ['-c', SERVER_CPU, process.execPath, join(import.meta.dirname, 'audit-chain.ts')], { timeout: 600_000, maxBuffer: 1 << 20 });
    const a = JSON.parse(chain.stdout.trim().split('\n').pop() ?? '{}') as Record<string, number>;
    const us = (k: string, d = 1): string => (a[k] ?? NaN).toFixed(d);
    notes.push(`Audit trail (bench/audit-chain.ts, in-process, one core): a decision ${us('decisionUs')} µs alone, ${us('withLineUs')} µs with its audit line unchained, ${us('withChainUs')} µs with the hash chain (+${us('chainOverLineUs')} µs: event id, canonical JSON, SHA-256); a signed checkpoint ${us('checkpointUs', 0)} µs, ${us('checkpointPerDecisionUs', 2)} µs per decision at one per 1000 events: ${us('decisionsPerSecondWithChain', 0)} decisions per CPU-second for decision + chained line; with the ticket an allowed mesh call gets, ${us('withTicketUs')} µs (+${us('ticketOverChainUs')} µs), ${us('decisionsPerSecondWithTicket', 0)} decisions per CPU-second; in AuthorizeStream messages of 512 checks (protobuf decode and encode included) ${us('inMessageUs')} µs per check, ${us('decisionsPerSecondInMessages', 0)} per CPU-second.`);

    console.log('secret scan cost per request…');
    const scan = await run('taskset', ['-c', SERVER_CPU, process.execPath, join(import.meta.dirname, 'secret-scan.ts')], { timeout: 600_000, maxBuffer: 1 << 20 });
    const sc = JSON.parse(scan.stdout.trim().split('\n').pop() ?? '{}') as Record<string, number>;
    const sus = (k: string): string => (sc[k] ?? NaN).toFixed(1);
    notes.push(`Secret and PII scan (bench/secret-scan.ts, in-process, one core, every detector): ${sus('getUs')} µs for a GET with 8 headers, ${sus('json1kUs')} µs with a 1 KiB JSON body, ${sus('body16kUs')} µs with a 16 KiB body (the most scanned), ${sus('secret16kUs')} µs with a key at its end.`);

    const rows: string[] = [];
    for (const c of CONNECTIONS) {
      const d = direct.get(c);
      if (d === undefined) continue;
      rows.push(`| ${c} | direct | ${d.rps.toFixed(0)} | ${fmt(d)} | — | — | — | 1.00 | ${d.errors} |`);
      const stub = results.get(`stub/${c}`);
      const nginx = results.get(`nginx/${c}`);
      for (const variant of ['nginx', ...CHAINS.map((ch) => ch.name)]) {
        const r = results.get(`${variant}/${c}`);
        if (r === undefined) continue;
        const toStub = stub === undefined || variant === 'nginx' ? '—' : (r.rps / stub.rps).toFixed(2);
        const toNginx = nginx === undefined || variant === 'nginx' ? '—' : (r.rps / nginx.rps).toFixed(2);
        rows.push(`| ${c} | ${variant} | ${r.rps.toFixed(0)} | ${fmt(r)} | ${signed(r.p50ms - d.p50ms)} / ${signed(r.p99ms - d.p99ms)} | ${toStub} | ${toNginx} | ${(r.rps / d.rps).toFixed(3)} | ${r.errors} |`);
      }
    }
    const report = [
      `### ${new Date().toISOString().slice(0, 10)} — ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}`,
      '',
      `Load average when the run started: ${loadAtStart}.`,
      '',
      `wrk 1 thread on CPU ${CLIENT_CPU}; app, control plane, both sidecars (or both nginx) on CPU ${SERVER_CPU}; logs to files; ${DURATION} per point after a ${WARMUP} warm-up per variant; ~150-byte JSON responses. Chains: nginx = Debian's nginx egress with an auth_request subrequest per call to an always-allow endpoint, mTLS with kept-alive upstream connections, nginx ingress verifying the client certificate; stub = authorization stubbed in-process at both sidecars; unary = one grpc-js unary Authorize per decision; stream = decisions as messages on one long-lived stream per sidecar, calls of one event-loop turn coalesced; stream-apart = stream with the control plane moved to CPU ${CLIENT_CPU} (beside wrk), as deployed, where the control plane does not share the agent pod's core. Both sidecars decide every call (two fresh decisions per request) except in stub.`,
      '',
      '| connections | chain | req/s | p50 / p99 ms | added p50 / p99 ms | × stub | × nginx | × direct | errors |',
      '|---|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
      ...notes.map((n) => `- ${n}`),
      '',
      'The issue\'s goals against this run (stream = the default transport, both fresh decisions):',
      '',
      '| goal | target | measured |',
      '|---|---|---|',
      ...goals(results, direct, rss, cpLoad.decisionsPerSecond),
    ].join('\n');
    publishReport(report);
  } finally {
    for (const stop of stops.reverse()) await stop();
    rmSync(dir, { recursive: true, force: true });
  }
  // Replicas on etcd (issue 12): how fast a change made through one is in force on another. Its own table.
  const propagation = await run(process.execPath, [join(import.meta.dirname, 'replica-propagation.ts')], { timeout: 600_000, maxBuffer: 1 << 20 });
  console.log(propagation.stdout);
  // And the decisions/s of one replica against three on one etcd (its own table).
  const replicated = await run(process.execPath, [join(import.meta.dirname, 'replicas-decisions.ts'), DURATION], { timeout: 600_000, maxBuffer: 1 << 20 });
  console.log(replicated.stdout);
  // And how long a sidecar takes to fail over when a replica dies or hangs (its own table).
  const failover = await run(process.execPath, [join(import.meta.dirname, 'failover.ts')], { timeout: 600_000, maxBuffer: 1 << 20 });
  console.log(failover.stdout);
  // The ingress's cost per call admitted on a ticket against one decided by a round trip (its own table).
  const ticketed = await run(process.execPath, [join(import.meta.dirname, 'ingress-ticket.ts')], { timeout: 600_000, maxBuffer: 1 << 20 });
  console.log(ticketed.stdout);
  // How fast a quarantine takes effect under continuous traffic: command to first denied call (its own table).
  const containment = await run(process.execPath, [join(import.meta.dirname, 'containment.ts')], { timeout: 600_000, maxBuffer: 1 << 20 });
  console.log(containment.stdout);
  // An MCP tools/call through both sidecars, stubbed and decided, and what the body and an argument rule cost (its own table).
  const mcp = await run(process.execPath, [join(import.meta.dirname, 'mcp-chain.ts')], { timeout: 900_000, maxBuffer: 1 << 20 });
  console.log(mcp.stdout);
}

await main();
