// node bench/memory.ts [stream|unary|stub] [connections] [seconds]: what a sidecar's memory is made
// of, idle and under wrk load. Starts the bench chain (bench/chain.ts), then prints for both sidecars
// the RSS split by kind (the Node binary's file pages, other files, the V8 heap, malloc, the rest of
// the anonymous memory) idle, at the end of the load and idle again after it, with the peak (VmHWM)
// and the load's req/s. Extra Node flags for the sidecars only: AIRLOCK_BENCH_SIDECAR_NODE_OPTIONS.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { IDLE_SETTLE_MS, rssMb, startApp, startControlPlane, startSidecars, wrk, type AuthzVariant, type Sidecar } from './chain.ts';

const variant = (process.argv[2] ?? 'stream') as AuthzVariant;
const connections = Number(process.argv[3] ?? 64);
const seconds = Number(process.argv[4] ?? 8);
const sidecarNodeOptions = process.env.AIRLOCK_BENCH_SIDECAR_NODE_OPTIONS;

interface Breakdown {
  rss: number;
  /** Proportional set size: shared pages (the binary's, among them) divided among the processes that map them. */
  pss: number;
  /** Pages of the node executable itself: shared by every Node process on a host. */
  nodeBinary: number;
  otherFiles: number;
  /** glibc's main arena ([heap]); other threads' arenas are among the anonymous mappings. */
  brk: number;
  anon: number;
  v8Committed: number;
  v8Used: number;
  external: number;
  /** V8's committed MB per heap space (the larger ones). */
  spaces: string;
}

const kb = (s: string): number => Number(/(\d+) kB/.exec(s)?.[1] ?? 0) / 1024;

/** /proc/<pid>/smaps summed by mapping kind, and the V8 figures from the sidecar's /metrics. */
async function breakdown(s: Sidecar): Promise<Breakdown> {
  const b: Breakdown = { rss: 0, pss: kb(/^Pss:.*$/m.exec(readFileSync(`/proc/${s.pid ?? 0}/smaps_rollup`, 'utf8'))?.[0] ?? ''), nodeBinary: 0, otherFiles: 0, brk: 0, anon: 0, v8Committed: 0, v8Used: 0, external: 0, spaces: '' };
  let kind: 'nodeBinary' | 'otherFiles' | 'brk' | 'anon' = 'anon';
  for (const line of readFileSync(`/proc/${s.pid ?? 0}/smaps`, 'utf8').split('\n')) {
    const header = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header !== null) {
      const name = header[1] ?? '';
      kind = name === '[heap]' ? 'brk' : name.startsWith('/') ? (name === process.execPath ? 'nodeBinary' : 'otherFiles') : 'anon';
    } else if (line.startsWith('Rss:')) {
      b[kind] += kb(line);
      b.rss += kb(line);
    }
  }
  const text = await (await fetch(`http://127.0.0.1:${s.admin}/metrics`)).text();
  const metric = (name: string): number => Number(new RegExp(`^airlock_${name}(?:\\{[^}]*\\})? ([\\d.e+-]+)$`, 'm').exec(text)?.[1]) / 1048576;
  b.v8Committed = metric('nodejs_heap_size_total_bytes');
  b.v8Used = metric('nodejs_heap_size_used_bytes');
  b.external = metric('nodejs_external_memory_bytes');
  b.spaces = [...text.matchAll(/^airlock_nodejs_heap_space_size_total_bytes\{space="(\w+)"[^}]*\} (\d+)$/gm)]
    .filter((m) => Number(m[2]) > 512 * 1024)
    .map((m) => `${m[1] ?? ''} ${(Number(m[2]) / 1048576).toFixed(1)}`)
    .join(', ');
  return b;
}

function row(label: string, b: Breakdown): string {
  const f = (n: number): string => n.toFixed(1).padStart(7);
  return `${label.padEnd(28)}${f(b.rss)}${f(b.pss)}${f(b.nodeBinary)}${f(b.otherFiles)}${f(b.anon + b.brk)}${f(b.v8Committed)}${f(b.v8Used)}${f(b.brk)}${f(b.external)}  ${b.spaces}`;
}

const dir = mkdtempSync(join(tmpdir(), 'airlock-memory-'));
const stops: (() => Promise<void>)[] = [];
try {
  const app = await startApp();
  stops.unshift(() => app.stop());
  const cp = await startControlPlane(dir);
  stops.unshift(() => cp.stop());
  const env = sidecarNodeOptions === undefined ? {} : { NODE_OPTIONS: sidecarNodeOptions };
  const { planner, researcher } = await startSidecars(dir, cp, app.port, variant, env);
  const sidecars = [planner, researcher];
  stops.unshift(() => planner.stop(), () => researcher.stop());
  const url = `http://127.0.0.1:${planner.outbound}/`;
  console.log(`${variant}${sidecarNodeOptions === undefined ? '' : ` (NODE_OPTIONS=${sidecarNodeOptions})`}: MB; anon = anonymous incl. malloc's [heap]; V8 = committed / used; ext = external (Buffers, TLS, wasm)`);
  console.log(`${''.padEnd(28)}${['RSS', 'PSS', 'binary', 'files', 'anon', 'V8', 'used', 'malloc', 'ext'].map((h) => h.padStart(7)).join('')}`);
  await sleep(2000);
  for (const s of sidecars) console.log(row(`${s.name} idle`, await breakdown(s)));
  // Under load: a breakdown just before the end of the run, and the peak from VmHWM.
  const load = wrk(url, connections, `${seconds}s`, true);
  await sleep(seconds * 1000 - 1500);
  const loaded = await Promise.all(sidecars.map((s) => breakdown(s)));
  const r = await load;
  sidecars.forEach((s, i) => console.log(row(`${s.name} loaded (${connections} conn)`, loaded[i] as Breakdown)));
  await sleep(IDLE_SETTLE_MS);
  for (const s of sidecars) console.log(row(`${s.name} idle after`, await breakdown(s)));
  console.log(`peak RSS (VmHWM): ${sidecars.map((s) => `${s.name} ${rssMb(s.pid, 'VmHWM').toFixed(1)} MB`).join(', ')}`);
  console.log(`load: ${r.rps.toFixed(0)} req/s, p50 ${r.p50ms.toFixed(2)} ms, p99 ${r.p99ms.toFixed(2)} ms, errors ${r.errors}`);
} finally {
  for (const stop of stops) await stop();
}
