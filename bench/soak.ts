// Issue 16 item 5: a soak. A real mesh (the control plane and three sidecars as `airlock` processes,
// SVIDs renewed every ~10 s) under mixed traffic for MINUTES (default 10): allowed and denied calls,
// MCP tools/call allowed and denied, CONNECT tunnels to an allowed external host (a TCP echo on
// loopback). Every SAMPLE_S seconds it prints, per process, RSS, private memory (RssAnon), JS heap
// used, open file descriptors and event-loop delay p99; at the end, each one's growth from the end of
// warm-up (the first 2 minutes) to the last sample, and the calls made by kind and status.
// Bounded: 4 workers, a short pause between calls. Run: npm run soak [-- MINUTES]
import { readdirSync, readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { cpus, loadavg, totalmem } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { startEchoApp } from '../cli/src/demo/echo-app.ts';
import { startMcpEchoApp } from '../test/support/mcp-echo-app.ts';
import { policyYaml, startMesh } from '../test/support/mesh.ts';

const MINUTES = Number(process.argv[2] ?? 10);
const SAMPLE_S = Number(process.env.AIRLOCK_SOAK_SAMPLE_S ?? 30);
const WARMUP_S = Math.min(120, (MINUTES * 60) / 4);
const WORKERS = 4;

interface Sample {
  readonly at: number;
  readonly rssMb: number;
  readonly privateMb: number;
  readonly heapMb: number;
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
    fds: readdirSync(`/proc/${pid}/fd`).length,
    loopP99Ms: metric(page, 'airlock_nodejs_eventloop_lag_p99_seconds') * 1000,
  };
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
  });
  const counts = new Map<string, number>();
  const count = (kind: string, outcome: string | number): void => void counts.set(`${kind} ${outcome}`, (counts.get(`${kind} ${outcome}`) ?? 0) + 1);
  const processes = [
    { name: 'control-plane', pid: mesh.controlPlaneProcess()?.child.pid ?? 0, metrics: `http://127.0.0.1:${mesh.httpPort}/metrics` },
    ...[...mesh.agents.values()].map((a) => ({ name: `sidecar ${a.name}`, pid: a.sidecar.child.pid ?? 0, metrics: `http://127.0.0.1:${a.adminPort}/metrics` })),
  ];
  const samples = new Map<string, Sample[]>(processes.map((p) => [p.name, []]));
  const started = performance.now();
  const endAt = started + MINUTES * 60_000;
  const mcp = (id: number, tool: string): string => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: tool, arguments: { q: 'soak' } } });
  try {
    const workers = Array.from({ length: WORKERS }, async (_, w) => {
      for (let i = 0; performance.now() < endAt; i++) {
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
        await sleep(2);
      }
    });
    const sampler = (async () => {
      console.log('seconds  process               RSS MB  private MB  heap MB  fds  loop p99 ms');
      while (performance.now() < endAt) {
        const at = Math.round((performance.now() - started) / 1000);
        for (const p of processes) {
          const s = await sample(p.pid, p.metrics, at);
          samples.get(p.name)?.push(s);
          console.log(`${String(at).padStart(7)}  ${p.name.padEnd(20)} ${s.rssMb.toFixed(1).padStart(7)} ${s.privateMb.toFixed(1).padStart(11)} ${s.heapMb.toFixed(1).padStart(8)} ${String(s.fds).padStart(4)} ${s.loopP99Ms.toFixed(1).padStart(12)}`);
        }
        await sleep(Math.max(0, Math.min(SAMPLE_S * 1000, endAt - performance.now())));
      }
    })();
    await Promise.all([...workers, sampler]);
    const report = [
      `### ${new Date().toISOString().slice(0, 10)} — soak, ${MINUTES} min — ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}`,
      '',
      `Load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(', ')}. Growth from the end of warm-up (${WARMUP_S} s) to the last sample:`,
      '',
      '| process | RSS MB | private MB | heap MB | fds | loop p99 ms (last) |',
      '|---|---|---|---|---|---|',
      ...processes.map((p) => {
        const all = samples.get(p.name) ?? [];
        const warm = all.find((s) => s.at >= WARMUP_S) ?? all[0];
        const last = all.at(-1);
        if (warm === undefined || last === undefined) return `| ${p.name} | no samples |`;
        const d = (a: number, b: number): string => `${a.toFixed(1)} → ${b.toFixed(1)} (${b - a >= 0 ? '+' : ''}${(b - a).toFixed(1)})`;
        return `| ${p.name} | ${d(warm.rssMb, last.rssMb)} | ${d(warm.privateMb, last.privateMb)} | ${d(warm.heapMb, last.heapMb)} | ${warm.fds} → ${last.fds} | ${last.loopP99Ms.toFixed(1)} |`;
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
