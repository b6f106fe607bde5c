// Issue 16 item 5: a soak. A real mesh (the control plane and three sidecars as `airlock` processes,
// SVIDs renewed every ~10 s) under mixed traffic for MINUTES (default 10): allowed and denied calls,
// MCP tools/call allowed and denied, CONNECT tunnels to an allowed external host (a TCP echo on
// loopback). Every SAMPLE_S seconds it prints, per process, RSS, private memory (RssAnon), JS heap
// used, open file descriptors and event-loop delay p99; at the end, each one's growth from the end of
// warm-up (the first 2 minutes) to the last sample, and the calls made by kind and status.
// Bounded: 4 workers, a short pause between calls, or paced (--rate). Run: npm run soak -- --help
import { mkdtempSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { startEchoApp } from '../cli/src/demo/echo-app.ts';
import { startMcpEchoApp } from '../test/support/mcp-echo-app.ts';
import { policyYaml, startMesh } from '../test/support/mesh.ts';

const USAGE = `Usage: npm run soak -- [MINUTES] [options]   (default 10 minutes)

  --rate N          start N calls per second in all, spread over the workers (a worker that falls
                    behind does not burst to catch up). Default: unpaced, each worker pauses 2 ms
                    between calls, which saturates a small machine.
  --workers N       concurrent callers (default 4)
  --env KEY=VALUE   set in the environment of every airlock process (repeatable), e.g. MALLOC_ARENA_MAX=2
  --heap-snapshots  start the control plane with --heapsnapshot-signal=SIGUSR2 and take a heap
                    snapshot just before the end of warm-up and at the end (after the traffic stops,
                    after a last sample); compare them with bench/heapsnapshot-diff.ts
  --help            this text

Samples every AIRLOCK_SOAK_SAMPLE_S seconds (default 30). Writes samples.json and the heap snapshots
into a directory of its own under the system's temp dir (printed; kept).`;

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rate: { type: 'string' },
    workers: { type: 'string', default: '4' },
    env: { type: 'string', multiple: true, default: [] },
    'heap-snapshots': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
const MINUTES = Number(positionals[0] ?? 10);
const RATE = opts.rate === undefined ? undefined : Number(opts.rate);
const WORKERS = Number(opts.workers);
const SAMPLE_S = Number(process.env.AIRLOCK_SOAK_SAMPLE_S ?? 30);
const WARMUP_S = Math.min(120, (MINUTES * 60) / 4);
const EXTRA_ENV = Object.fromEntries(
  opts.env.map((kv) => {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`--env ${kv}: expected KEY=VALUE`);
    return [kv.slice(0, eq), kv.slice(eq + 1)];
  }),
);
if (!(MINUTES > 0) || !(WORKERS >= 1) || (RATE !== undefined && !(RATE > 0))) {
  console.error(USAGE);
  process.exit(2);
}

interface Sample {
  readonly at: number;
  readonly rssMb: number;
  readonly privateMb: number;
  readonly heapMb: number;
  readonly heapTotalMb: number;
  readonly externalMb: number;
  readonly fds: number;
  readonly loopP99Ms: number;
}

function procStatusMb(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN) / 1024;
}

function metric(page: string, name: string): number {
  // Default metrics carry a `process` label: `name{process="…"} value`.
  const line = page.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return Number(line?.slice(line.lastIndexOf(' ') + 1) ?? NaN);
}

async function sample(pid: number, metricsUrl: string, at: number): Promise<Sample> {
  const page = await (await fetch(metricsUrl)).text();
  return {
    at,
    rssMb: procStatusMb(pid, 'VmRSS'),
    privateMb: procStatusMb(pid, 'RssAnon'),
    heapMb: metric(page, 'airlock_nodejs_heap_size_used_bytes') / 2 ** 20,
    heapTotalMb: metric(page, 'airlock_nodejs_heap_size_total_bytes') / 2 ** 20,
    externalMb: metric(page, 'airlock_nodejs_external_memory_bytes') / 2 ** 20,
    fds: readdirSync(`/proc/${pid}/fd`).length,
    loopP99Ms: metric(page, 'airlock_nodejs_eventloop_lag_p99_seconds') * 1000,
  };
}

/**
 * Asks the control plane (started with --heapsnapshot-signal=SIGUSR2) for a heap snapshot and waits
 * for it: Node writes it on the main thread, so once /metrics answers again the file is complete.
 */
async function heapSnapshot(pid: number, dir: string, metricsUrl: string, name: string): Promise<string> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  for (let waited = 0; waited < 120_000; waited += 500) {
    await sleep(500);
    const added = readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    if (added === undefined) continue;
    await fetch(metricsUrl, { signal: AbortSignal.timeout(120_000) });
    const path = join(dir, name);
    renameSync(join(dir, added), path);
    return path;
  }
  throw new Error(`no heap snapshot from ${pid} in ${dir} after 120 s`);
}

/** One CONNECT tunnel through the planner's sidecar to the echo: a line sent and read back. */
function tunnel(proxyPort: number, target: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(proxyPort, '127.0.0.1');
    let got = '';
    socket.setTimeout(10_000, () => socket.destroy());
    socket.on('error', () => resolve('socket error'));
    socket.on('close', () => resolve(got.startsWith('HTTP/1.1 200') ? (got.endsWith('ping\n') ? 'echoed' : 'no echo') : got.slice(0, 12)));
    socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.startsWith('HTTP/1.1 200') && got.includes('\r\n\r\n') && !got.includes('ping')) socket.write('ping\n');
      if (got.endsWith('ping\n') || (!got.startsWith('HTTP/1.1 200') && got.includes('\r\n\r\n'))) socket.end();
    });
  });
}

async function main(): Promise<void> {
  const outDir = mkdtempSync(join(tmpdir(), 'airlock-soak-'));
  console.log(`soak: ${MINUTES} min, ${RATE === undefined ? 'unpaced' : `${RATE} calls/s`}, ${WORKERS} workers, env ${JSON.stringify(EXTRA_ENV)}; output in ${outDir}`);
  // The children's environment is ours (spawnAirlock), so this reaches the control plane and every sidecar.
  Object.assign(process.env, EXTRA_ENV);
  // `env` execs node in place: the pid sampled and signalled is the control plane's.
  const controlPlaneWrap = opts['heap-snapshots']
    ? ['env', `NODE_OPTIONS=${[process.env.NODE_OPTIONS, '--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${outDir}`].filter((v) => v !== undefined && v !== '').join(' ')}`]
    : undefined;
  const echo = createServer((socket) => socket.pipe(socket));
  await listen(echo, { host: '127.0.0.1', port: 0 });
  const echoTarget = `127.0.0.1:${boundPort(echo)}`;
  const policy = `${policyYaml('agents', ['planner', 'researcher', 'tools'], [{ name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] }])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: planner-mcp }
spec:
  from: { segments: [planner] }
  to: { segments: [tools] }
  rules: [ { methods: [POST], paths: [/mcp], mcp: { tools: ["search_*"] } } ]
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: loopback-echo }
spec:
  from: { segments: [planner] }
  to: { hosts: ["127.0.0.1"], ports: [${boundPort(echo)}] }
  action: allow
`;
  const mesh = await startMesh({
    agents: ['planner', 'researcher', 'tools'],
    policy,
    // Renewals at ~half the lifetime: several per minute per sidecar, as a fault run saw them grow memory.
    controlPlaneArgs: ['--svid-ttl', '20s'],
    sidecarArgs: ['--egress-allow-cidrs', '127.0.0.0/8'],
    // What the apps received is not kept: a soak would grow by it.
    startApp: (agent) => (agent === 'tools' ? startMcpEchoApp(agent, () => undefined) : startEchoApp(agent, 0)),
    ...(controlPlaneWrap === undefined ? {} : { controlPlaneWrap }),
  });
  const counts = new Map<string, number>();
  const count = (kind: string, outcome: string | number): void => void counts.set(`${kind} ${outcome}`, (counts.get(`${kind} ${outcome}`) ?? 0) + 1);
  const processes = [
    { name: 'control-plane', pid: mesh.controlPlaneProcess()?.child.pid ?? 0, metrics: `http://127.0.0.1:${mesh.httpPort}/metrics` },
    ...[...mesh.agents.values()].map((a) => ({ name: `sidecar ${a.name}`, pid: a.sidecar.child.pid ?? 0, metrics: `http://127.0.0.1:${a.adminPort}/metrics` })),
  ];
  const samples = new Map<string, Sample[]>(processes.map((p) => [p.name, []]));
  const loads: { at: number; loadavg: number[] }[] = [];
  const snapshots: string[] = [];
  const controlPlane = processes[0];
  const started = performance.now();
  const endAt = started + MINUTES * 60_000;
  const mcp = (id: number, tool: string): string => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: tool, arguments: { q: 'soak' } } });
  try {
    // Paced: each worker starts a call every WORKERS/RATE seconds, staggered; behind schedule it
    // calls at once but never more than one at a time, so the load stays bounded.
    const interval = RATE === undefined ? undefined : (WORKERS * 1000) / RATE;
    const workers = Array.from({ length: WORKERS }, async (_, w) => {
      let next = performance.now() + (interval ?? 0) * (w / WORKERS);
      for (let i = 0; performance.now() < endAt; i++) {
        if (interval !== undefined) {
          const wait = next - performance.now();
          if (wait > 0) await sleep(wait);
          next = Math.max(next + interval, performance.now());
          if (performance.now() >= endAt) break;
        }
        switch ((i + w) % 6) {
          case 0:
          case 1:
            count('GET allowed', (await mesh.call('planner', 'GET', `http://researcher.agents/v1/item/${i}`)).status);
            break;
          case 2:
            count('DELETE denied', (await mesh.call('planner', 'DELETE', `http://researcher.agents/v1/item/${i}`)).status);
            break;
          case 3:
            count('MCP search_web', (await mesh.call('planner', 'POST', 'http://tools.agents/mcp', { headers: { 'content-type': 'application/json' }, body: mcp(i, 'search_web') })).status);
            break;
          case 4:
            count('MCP delete_all', (await mesh.call('planner', 'POST', 'http://tools.agents/mcp', { headers: { 'content-type': 'application/json' }, body: mcp(i, 'delete_all') })).status);
            break;
          default:
            count('CONNECT', await tunnel(mesh.agent('planner').outboundPort, echoTarget));
        }
        if (interval === undefined) await sleep(2);
      }
    });
    const warmSnapshot = (async () => {
      if (!opts['heap-snapshots'] || controlPlane === undefined) return;
      // Half a sample before the end of warm-up: making a snapshot costs the process native memory it
      // keeps (~80 MB private in a trial), so the growth, measured from the first sample at or after
      // the end of warm-up, starts after it.
      await sleep(Math.max(0, WARMUP_S - SAMPLE_S / 2) * 1000);
      const path = await heapSnapshot(controlPlane.pid, outDir, controlPlane.metrics, 'control-plane-warm.heapsnapshot');
      snapshots.push(path);
      console.log(`heap snapshot (end of warm-up): ${path}`);
    })();
    const sampler = (async () => {
      console.log('seconds  process               RSS MB  private MB  heap MB  heap total  external  fds  loop p99 ms');
      while (performance.now() < endAt) {
        const at = Math.round((performance.now() - started) / 1000);
        for (const p of processes) {
          const s = await sample(p.pid, p.metrics, at);
          samples.get(p.name)?.push(s);
          console.log(`${String(at).padStart(7)}  ${p.name.padEnd(20)} ${s.rssMb.toFixed(1).padStart(7)} ${s.privateMb.toFixed(1).padStart(11)} ${s.heapMb.toFixed(1).padStart(8)} ${s.heapTotalMb.toFixed(1).padStart(11)} ${s.externalMb.toFixed(1).padStart(9)} ${String(s.fds).padStart(4)} ${s.loopP99Ms.toFixed(1).padStart(12)}`);
        }
        const load = loadavg();
        loads.push({ at, loadavg: load });
        console.log(`${String(at).padStart(7)}  load average ${load.map((l) => l.toFixed(2)).join(', ')}; calls so far ${[...counts.values()].reduce((a, b) => a + b, 0)}`);
        await sleep(Math.max(0, Math.min(SAMPLE_S * 1000, endAt - performance.now())));
      }
    })();
    await Promise.all([...workers, sampler, warmSnapshot]);
    const seconds = (performance.now() - started) / 1000;
    if (opts['heap-snapshots'] && controlPlane !== undefined) {
      // After the traffic: what is still held then is held by state, not by calls in flight.
      const end = processes.map(async (p) => sample(p.pid, p.metrics, Math.round((performance.now() - started) / 1000)));
      for (const [i, s] of (await Promise.all(end)).entries()) samples.get(processes[i]?.name ?? '')?.push(s);
      const path = await heapSnapshot(controlPlane.pid, outDir, controlPlane.metrics, 'control-plane-end.heapsnapshot');
      snapshots.push(path);
      console.log(`heap snapshot (end): ${path}`);
    }
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    writeFileSync(join(outDir, 'samples.json'), JSON.stringify({ minutes: MINUTES, rate: RATE, workers: WORKERS, env: EXTRA_ENV, warmupS: WARMUP_S, samples: Object.fromEntries(samples), loads, counts: Object.fromEntries(counts), snapshots }, null, 1));
    const report = [
      `### ${new Date().toISOString().slice(0, 10)} — soak, ${MINUTES} min — ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}`,
      '',
      `Command: npm run soak -- ${process.argv.slice(2).join(' ')}. ${total} calls in ${seconds.toFixed(0)} s (${(total / seconds).toFixed(0)}/s). Load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(', ')}. Growth from the end of warm-up (${WARMUP_S} s) to the last sample:`,
      '',
      '| process | RSS MB | private MB | heap MB | heap total MB | external MB | fds | loop p99 ms (last) |',
      '|---|---|---|---|---|---|---|---|',
      ...processes.map((p) => {
        const all = samples.get(p.name) ?? [];
        const warm = all.find((s) => s.at >= WARMUP_S) ?? all[0];
        const last = all.at(-1);
        if (warm === undefined || last === undefined) return `| ${p.name} | no samples |`;
        const d = (a: number, b: number): string => `${a.toFixed(1)} → ${b.toFixed(1)} (${b - a >= 0 ? '+' : ''}${(b - a).toFixed(1)})`;
        return `| ${p.name} | ${d(warm.rssMb, last.rssMb)} | ${d(warm.privateMb, last.privateMb)} | ${d(warm.heapMb, last.heapMb)} | ${d(warm.heapTotalMb, last.heapTotalMb)} | ${d(warm.externalMb, last.externalMb)} | ${warm.fds} → ${last.fds} | ${last.loopP99Ms.toFixed(1)} |`;
      }),
      '',
      `Calls: ${[...counts.entries()].sort().map(([k, n]) => `${k}: ${n}`).join('; ')}.`,
    ].join('\n');
    console.log(`\n${report}\n`);
  } finally {
    await mesh.close();
    await closeServer(echo);
  }
}

await main();
