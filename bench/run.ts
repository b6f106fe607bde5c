// npm run bench: req/s and p50/p99 of (a) a direct call to an echo app and (b) the same call through
// both sidecars with both fresh authorizations, at several concurrency levels, in one run.
// Servers are pinned to CPU 0 and wrk to CPU 1 (taskset), as in ../shared/PERF-NOTES.md.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminPost } from '../cli/src/admin-client.ts';
import { spawnAirlock, waitReady, type AirlockProcess } from '../cli/src/demo/processes.ts';
import { policyYaml } from '../test/support/mesh.ts';
import { freePort } from '../test/support/ports.ts';

const run = promisify(execFile);
const DURATION = process.env.AIRLOCK_BENCH_DURATION ?? '8s';
const WARMUP = process.env.AIRLOCK_BENCH_WARMUP ?? '5s';
const CONNECTIONS = (process.env.AIRLOCK_BENCH_CONNECTIONS ?? '1,16,64').split(',').map(Number);
const SERVER_CPU = '0';
const CLIENT_CPU = '1';

interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (m === null) return NaN;
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2] as 'us' | 'ms' | 's'];
}

async function wrk(url: string, connections: number, duration: string, env: NodeJS.ProcessEnv = {}, script?: string): Promise<WrkResult> {
  const args = ['-c', CLIENT_CPU, 'wrk', '-t', '1', '-c', String(connections), '-d', duration, '--latency', ...(script === undefined ? [] : ['-s', script]), url];
  const { stdout } = await run('taskset', args, { env: { ...process.env, ...env }, timeout: 120_000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const p50 = /\s50%\s+([\d.]+\w+)/.exec(stdout)?.[1] ?? '';
  const p99 = /\s99%\s+([\d.]+\w+)/.exec(stdout)?.[1] ?? '';
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const errors = non2xx + (sockErr === null ? 0 : sockErr.slice(1).reduce((a, b) => a + Number(b), 0));
  return { rps, p50ms: toMs(p50), p99ms: toMs(p99), errors };
}

function peakRssMb(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
}

function rssMb(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
}

/** Mean of a histogram from a /metrics page, in ms: `<name>_sum / <name>_count` for one label set. */
async function meanMs(url: string, name: string, label: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const pick = (suffix: string): number => Number(new RegExp(`^${name}_${suffix}\\{[^}]*${label}[^}]*\\} ([\\d.e+-]+)$`, 'm').exec(text)?.[1]);
  return (pick('sum') / pick('count')) * 1000;
}

async function pinned(p: ChildProcess | AirlockProcess): Promise<void> {
  const pid = 'child' in p ? p.child.pid : p.pid;
  if (pid !== undefined) await run('taskset', ['-a', '-p', '-c', SERVER_CPU, String(pid)]);
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
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-'));
  const stops: (() => Promise<void>)[] = [];
  try {
    const td = 'bench.test';
    const [grpcPort, httpPort, appPort] = [await freePort(), await freePort(), await freePort()];
    const app = spawn(process.execPath, [join(import.meta.dirname, 'echo-server.ts'), String(appPort)], { stdio: ['ignore', 'pipe', 'inherit'] });
    stops.push(async () => {
      app.kill('SIGTERM');
      await sleep(100);
    });
    await new Promise((resolve) => app.stdout.once('data', resolve));
    await pinned(app);

    const policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, policyYaml('bench', ['planner', 'researcher'], [
      { name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] },
    ]));
    const dataDir = join(dir, 'cp');
    const cp = spawnAirlock('control-plane', ['control-plane', '--trust-domain', td, '--data-dir', dataDir, '--grpc-listen', `127.0.0.1:${grpcPort}`, '--http-listen', `127.0.0.1:${httpPort}`, '--policy-file', policyFile, '--log-level', 'warn'], { logFile: join(dir, 'cp.log') });
    stops.push(() => cp.stop());
    await waitReady(cp, `http://127.0.0.1:${httpPort}/readyz`);
    await pinned(cp);
    const creds = { server: `http://127.0.0.1:${httpPort}`, token: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim() };

    const sidecars: Record<string, { outbound: number; admin: number; p: AirlockProcess }> = {};
    for (const [name, target] of [['researcher', appPort], ['planner', await freePort()]] as const) {
      const [outbound, inbound, admin] = [await freePort(), await freePort(), await freePort()];
      const { token } = (await adminPost(creds, '/v1/join-tokens', { identity: `spiffe://${td}/ns/bench/sa/${name}` })) as { token: string };
      const p = spawnAirlock(name, ['sidecar', '--trust-domain', td, '--control-plane', `127.0.0.1:${grpcPort}`, '--ca-file', join(dataDir, 'ca.pem'), '--outbound-listen', `127.0.0.1:${outbound}`, '--inbound-listen', `127.0.0.1:${inbound}`, '--admin-listen', `127.0.0.1:${admin}`, '--app-port', String(target), '--log-level', 'warn'], { logFile: join(dir, `${name}.log`), env: { AIRLOCK_JOIN_TOKEN: token } });
      stops.push(() => p.stop());
      await waitReady(p, `http://127.0.0.1:${admin}/readyz`);
      await pinned(p);
      sidecars[name] = { outbound, admin, p };
    }
    const planner = sidecars.planner;
    const researcher = sidecars.researcher;
    if (planner === undefined || researcher === undefined) throw new Error('sidecars missing');
    const idleRss = { planner: rssMb(planner.p.child.pid), researcher: rssMb(researcher.p.child.pid) };

    const directUrl = `http://127.0.0.1:${appPort}/v1/search`;
    const proxyUrl = `http://127.0.0.1:${planner.outbound}/`;
    const proxyEnv = { AIRLOCK_BENCH_TARGET: 'http://researcher.bench/v1/search' };
    const script = join(import.meta.dirname, 'wrk-proxy.lua');

    console.log(`warming up (${WARMUP} each)…`);
    await wrk(directUrl, 16, WARMUP);
    await wrk(proxyUrl, 16, WARMUP, proxyEnv, script);

    const rows: string[] = [];
    for (const c of CONNECTIONS) {
      const direct = await wrk(directUrl, c, DURATION);
      const chain = await wrk(proxyUrl, c, DURATION, proxyEnv, script);
      const row = `| ${c} | ${direct.rps.toFixed(0)} | ${direct.p50ms.toFixed(2)} / ${direct.p99ms.toFixed(2)} | ${chain.rps.toFixed(0)} | ${chain.p50ms.toFixed(2)} / ${chain.p99ms.toFixed(2)} | +${(chain.p50ms - direct.p50ms).toFixed(2)} / +${(chain.p99ms - direct.p99ms).toFixed(2)} | ${(chain.rps / direct.rps).toFixed(3)} | ${chain.errors} |`;
      console.log(row);
      rows.push(row);
    }
    const peak = { planner: peakRssMb(planner.p.child.pid), researcher: peakRssMb(researcher.p.child.pid) };
    // Where a chained call's time goes, averaged over the whole run (warm-up included).
    const authzOut = await meanMs(`http://127.0.0.1:${planner.admin}/metrics`, 'airlock_sidecar_authz_duration_seconds', 'direction="outbound"');
    const authzIn = await meanMs(`http://127.0.0.1:${researcher.admin}/metrics`, 'airlock_sidecar_authz_duration_seconds', 'direction="inbound"');
    const decideOut = await meanMs(`http://127.0.0.1:${httpPort}/metrics`, 'airlock_authz_decision_duration_seconds', 'direction="outbound"');
    const decideIn = await meanMs(`http://127.0.0.1:${httpPort}/metrics`, 'airlock_authz_decision_duration_seconds', 'direction="inbound"');
    const cpuModel = cpus()[0]?.model ?? 'unknown CPU';
    const report = [
      `### ${new Date().toISOString().slice(0, 10)} — ${cpuModel}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}`,
      '',
      `wrk 1 thread on CPU ${CLIENT_CPU}; app, control plane and both sidecars on CPU ${SERVER_CPU}; ${DURATION} per point after a ${WARMUP} warm-up; ~150-byte JSON responses.`,
      '',
      '| connections | direct req/s | direct p50 / p99 ms | via 2 sidecars req/s | via sidecars p50 / p99 ms | added p50 / p99 ms | ratio to direct | errors |',
      '|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
      `Mean Authorize round trip seen by the sidecars: ${authzOut.toFixed(2)} ms outbound, ${authzIn.toFixed(2)} ms inbound; of which the control plane's decision itself: ${(decideOut * 1000).toFixed(0)} µs / ${(decideIn * 1000).toFixed(0)} µs.`,
      '',
      `Sidecar RSS: idle ${idleRss.planner.toFixed(0)} MB (planner, egress) / ${idleRss.researcher.toFixed(0)} MB (researcher, ingress); peak ${peak.planner.toFixed(0)} MB / ${peak.researcher.toFixed(0)} MB.`,
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
