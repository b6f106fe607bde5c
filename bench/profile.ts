// node bench/profile.ts [stream|unary|stub] [connections] [seconds]: runs the chain under wrk with
// `node --cpu-prof` on the control plane and both sidecars, then prints where each process spent
// its CPU (self time by function, and by package). The .cpuprofile files stay in the printed
// directory for Chrome DevTools.
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { counter, cpuSeconds, run, startApp, startControlPlane, startSidecars, wrk, type AuthzVariant } from './chain.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const variant = (process.argv[2] ?? 'stream') as AuthzVariant;
const connections = Number(process.argv[3] ?? 16);
const seconds = Number(process.argv[4] ?? 10);
/** AIRLOCK_PROFILE=0: no --cpu-prof, only the CPU per request from /proc (to compare code versions without the profiler's overhead). */
const profiling = process.env.AIRLOCK_PROFILE !== '0';
/** This checkout's root (a worktree's too), as frames' URLs name it. */
const ROOT = `${resolve(import.meta.dirname, '..')}/`;
const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Where a frame's code lives, coarse enough to read: a package, a workspace, or node internals. */
function area(url: string): string {
  if (url === '') return '(native/gc/idle)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg !== null) return pkg[1] ?? url;
  const ws = new RegExp(`${escapeRegExp(ROOT)}([^/]+)/src/(.+?)/`).exec(url) ?? new RegExp(`${escapeRegExp(ROOT)}([^/]+)/src/`).exec(url);
  if (ws !== null) return `${ws[1]}/${ws[2] ?? ''}`;
  if (url.startsWith('node:')) return url.replace(/^node:internal\//, 'node:').split('/').slice(0, 2).join('/');
  return url;
}

/** Context switches (voluntary, involuntary) of a process so far, all threads: each is a wake-up or a preemption on the shared core. */
function switches(pid: number | undefined): [number, number] {
  const sum: [number, number] = [0, 0];
  const dir = `/proc/${pid}/task`;
  if (pid === undefined || !existsSync(dir)) return sum;
  for (const tid of readdirSync(dir)) {
    try {
      const status = readFileSync(`${dir}/${tid}/status`, 'utf8');
      sum[0] += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
      sum[1] += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
    } catch {
      // the thread exited
    }
  }
  return sum;
}

function summarize(file: string): string {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  p.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const fn = new Map<string, number>();
  const areas = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (n === undefined) continue;
    const f = n.callFrame;
    if (f.functionName === '(idle)') continue;
    const key = `${f.functionName || '(anon)'} ${f.url.replace(`file://${ROOT}`, '').replace(ROOT, '').replace(/^.*node_modules\//, '')}:${f.lineNumber + 1}`;
    fn.set(key, (fn.get(key) ?? 0) + us);
    areas.set(area(f.url), (areas.get(area(f.url)) ?? 0) + us);
  }
  const busy = [...fn.values()].reduce((a, b) => a + b, 0);
  const pct = (us: number): string => `${((100 * us) / busy).toFixed(1)}%`;
  const top = (m: Map<string, number>, k: number): string[] => [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, us]) => `  ${pct(us).padStart(6)}  ${name}`);
  return [`busy ${(busy / 1e6).toFixed(1)} s of ${(total / 1e6).toFixed(1)} s sampled`, 'by area:', ...top(areas, 14), 'by function (self):', ...top(fn, 25)].join('\n');
}

const dir = mkdtempSync(join(tmpdir(), 'airlock-profile-'));
const profDir = (name: string): NodeJS.ProcessEnv => (profiling ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${join(dir, name)}` } : {});
const app = await startApp();
const cp = await startControlPlane(dir, profDir('control-plane'));
const { planner, researcher } = await startSidecars(dir, cp, app.port, variant, {});
// Only the sidecars under test are profiled: restart them with the profiler on.
await planner.stop();
await researcher.stop();
const profiled = await startSidecars(dir, cp, app.port, variant, profDir('sidecars'));
// AIRLOCK_PROFILE_CP_CPU=1: the control plane on the load generator's core, as stream-apart in run.ts.
if (process.env.AIRLOCK_PROFILE_CP_CPU !== undefined && cp.pid !== undefined) await run('taskset', ['-a', '-p', '-c', process.env.AIRLOCK_PROFILE_CP_CPU, String(cp.pid)]);
const url = `http://127.0.0.1:${profiled.planner.outbound}/`;
await wrk(url, connections, '4s', true); // JIT warm-up
const cpMetrics = `http://127.0.0.1:${cp.httpPort}/metrics`;
const decisionsBefore = await counter(cpMetrics, 'airlock_authz_decisions_total');
const cpu = { cp: cpuSeconds(cp.pid), planner: cpuSeconds(profiled.planner.pid), researcher: cpuSeconds(profiled.researcher.pid) };
const pids = { 'control plane': cp.pid, egress: profiled.planner.pid, ingress: profiled.researcher.pid, app: app.pid };
const switchesBefore = Object.entries(pids).map(([who, pid]) => [who, switches(pid)] as const);
const r = await wrk(url, connections, `${seconds}s`, true);
const decisions = (await counter(cpMetrics, 'airlock_authz_decisions_total')) - decisionsBefore;
const requests = r.rps * seconds;
// CPU time from /proc (all threads), not profile samples: on a shared core a sampled frame also
// counts the time its thread waited to be scheduled again.
const perCall = (s: number, n: number): string => `${((s * 1e6) / n).toFixed(0)} µs`;
console.log(`${variant}, ${connections} connections: ${r.rps.toFixed(0)} req/s, p50 ${r.p50ms} ms, p99 ${r.p99ms} ms, errors ${r.errors}`);
const perRequest = (n: number): string => (n / requests).toFixed(2);
console.log(`context switches per request (voluntary / involuntary): ${switchesBefore.map(([who, [v, i]]) => { const [v2, i2] = switches(pids[who as keyof typeof pids]); return `${who} ${perRequest(v2 - v)} / ${perRequest(i2 - i)}`; }).join(', ')}`);
console.log(`CPU: control plane ${perCall(cpuSeconds(cp.pid) - cpu.cp, decisions)} per decision; egress ${perCall(cpuSeconds(profiled.planner.pid) - cpu.planner, requests)}, ingress ${perCall(cpuSeconds(profiled.researcher.pid) - cpu.researcher, requests)} per request (profiler overhead included)`);
await profiled.planner.stop();
await profiled.researcher.stop();
await cp.stop();
await app.stop();
for (const who of profiling ? ['control-plane', 'sidecars'] : []) {
  for (const f of readdirSync(join(dir, who)).filter((x) => x.endsWith('.cpuprofile'))) {
    console.log(`\n== ${who} ${f}\n${summarize(join(dir, who, f))}`);
  }
}
console.log(`\nprofiles in ${dir}`);
