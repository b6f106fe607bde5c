// The benchmark's mesh: an echo app, a control plane and the two sidecars of one chain
// (planner's egress → mTLS → researcher's ingress → app), every server pinned to one CPU.
// Shared by run.ts (figures) and profile.ts (where the time goes).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { sidecarConfig } from '@airlock/sidecar/config';
import { adminPost } from '../cli/src/admin-client.ts';
import type { AdminCredentials } from '../cli/src/credentials.ts';
import { airlockEnv } from '../cli/src/demo/processes.ts';
import { policyYaml } from '../test/support/mesh.ts';
import { freePort } from '../test/support/ports.ts';
import { parseWrkOutput, type WrkResult } from './wrk-output.ts';

export type { WrkResult } from './wrk-output.ts';

export const run = promisify(execFile);
export const SERVER_CPU = '0';
export const CLIENT_CPU = '1';
export const TRUST_DOMAIN = 'bench.test';
/**
 * How long a sidecar is left alone after a load before its idle memory is read: the interval the load
 * ended in is busy, the next idle one gives back what the load grew (`idleMemoryRelease`), as a
 * deployed sidecar does when its traffic stops.
 */
export const IDLE_SETTLE_MS = 2 * (sidecarConfig.schema.idleMemoryRelease.default ?? 10_000) + 1500;
const AIRLOCK_BIN = join(import.meta.dirname, '..', 'cli', 'bin', 'airlock.js');
/** Where cli/bin/airlock.js keeps Node's compile cache. */
const COMPILE_CACHE = join(import.meta.dirname, '..', 'node_modules', '.cache', 'node-compile-cache');

/**
 * How the sidecars get their decisions: a real transport, or in-process (stub, bench only).
 * `stream-round-trip`: stream, with the ingress asking for every call instead of admitting on tickets (bench only).
 */
export type AuthzVariant = 'stub' | 'unary' | 'stream' | 'stream-round-trip';

export interface Sidecar {
  readonly name: string;
  readonly outbound: number;
  readonly inbound: number;
  readonly admin: number;
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

export interface ControlPlane {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly adminPort: number;
  readonly dataDir: string;
  readonly pid: number | undefined;
  /** Every replica's gRPC address (comma-separated) when there are several: what sidecars are given. */
  readonly grpcAddresses?: string;
  stop(): Promise<void>;
}

/** The CLI's credentials for this control plane's admin API (HTTPS, verified against its trust bundle). */
export function adminCredentials(cp: ControlPlane): AdminCredentials {
  return { server: `https://127.0.0.1:${cp.adminPort}`, token: readFileSync(join(cp.dataDir, 'admin-token'), 'utf8').trim(), caFile: join(cp.dataDir, 'trust-bundle.pem') };
}

async function pin(pid: number | undefined): Promise<void> {
  if (pid !== undefined) await run('taskset', ['-a', '-p', '-c', SERVER_CPU, String(pid)]);
}

/** The echo app (or another app script of bench/ taking its port) in its own process, pinned. */
export async function startApp(script = 'echo-server.ts'): Promise<{ port: number; pid: number | undefined; stop(): Promise<void> }> {
  const port = await freePort();
  const app = spawn(process.execPath, [join(import.meta.dirname, script), String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve) => app.stdout.once('data', resolve));
  await pin(app.pid);
  return { port, pid: app.pid, stop: () => stopChild(app) };
}

/** The control plane with a policy allowing planner → researcher GET /v1/* (or the given policy YAML). */
export async function startControlPlane(dir: string, env: NodeJS.ProcessEnv = {}, policy?: string): Promise<ControlPlane> {
  const [grpcPort, httpPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, policy ?? policyYaml('bench', ['planner', 'researcher'], [
    { name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] },
  ]));
  const dataDir = join(dir, 'cp');
  const logFile = join(dir, 'cp.log');
  const cp = spawnLogged([AIRLOCK_BIN, 'control-plane', '--trust-domain', TRUST_DOMAIN, '--data-dir', dataDir, '--grpc-listen', `127.0.0.1:${grpcPort}`, '--http-listen', `127.0.0.1:${httpPort}`, '--admin-listen', `127.0.0.1:${adminPort}`, '--policy-file', policyFile, '--log-level', 'warn'], logFile, env);
  await pollReady(`http://127.0.0.1:${httpPort}/readyz`, cp, logFile);
  await pin(cp.pid);
  return { grpcPort, httpPort, adminPort, dataDir, pid: cp.pid, stop: () => stopChild(cp) };
}

/**
 * Planner's and researcher's sidecars. `stub` runs bench/stub-sidecar.ts: the real sidecar with an
 * in-process authorizer injected through startSidecar's seam (identity still comes from the control plane).
 */
export async function startSidecars(dir: string, cp: ControlPlane, appPort: number, variant: AuthzVariant, env: NodeJS.ProcessEnv = {}, label: string = variant): Promise<{ planner: Sidecar; researcher: Sidecar }> {
  const creds = adminCredentials(cp);
  const start = async (name: string, target: number, stubUpstream: string): Promise<Sidecar> => {
    const [outbound, inbound, admin] = [await freePort(), await freePort(), await freePort()];
    const { token } = (await adminPost(creds, '/v1/join-tokens', { identity: `spiffe://${TRUST_DOMAIN}/ns/bench/sa/${name}` })) as { token: string };
    const args = ['--trust-domain', TRUST_DOMAIN, '--control-plane', cp.grpcAddresses ?? `127.0.0.1:${cp.grpcPort}`, '--ca-file', join(cp.dataDir, 'trust-bundle.pem'), '--outbound-listen', `127.0.0.1:${outbound}`, '--inbound-listen', `127.0.0.1:${inbound}`, '--admin-listen', `127.0.0.1:${admin}`, '--app-port', String(target), '--log-level', 'warn'];
    const logFile = join(dir, `${name}-${label}.log`);
    // A sidecar's environment as `airlock demo` gives it (SIDECAR_NODE_OPTIONS before any outer NODE_OPTIONS).
    // The stub starts without cli/bin/airlock.js: give it the same compile cache, so that it differs from the real sidecar only in its authorizer.
    const transport = variant === 'stream-round-trip' ? { AIRLOCK_AUTHZ_TRANSPORT: 'stream', NODE_COMPILE_CACHE: COMPILE_CACHE } : { AIRLOCK_AUTHZ_TRANSPORT: variant };
    const childEnv = { ...airlockEnv(['sidecar'], env), AIRLOCK_JOIN_TOKEN: token, ...(variant === 'stub' ? { NODE_COMPILE_CACHE: COMPILE_CACHE } : transport) };
    const script =
      variant === 'stub' ? [join(import.meta.dirname, 'stub-sidecar.ts'), stubUpstream] : variant === 'stream-round-trip' ? [join(import.meta.dirname, 'round-trip-sidecar.ts')] : [AIRLOCK_BIN, 'sidecar'];
    const child = spawnLogged([...script, ...args], logFile, childEnv);
    const pid = child.pid;
    const stop = (): Promise<void> => stopChild(child);
    await pollReady(`http://127.0.0.1:${admin}/readyz`, child, logFile);
    await pin(pid);
    return { name, outbound, inbound, admin, pid, stop };
  };
  const researcher = await start('researcher', appPort, '');
  const planner = await start('planner', await freePort(), `127.0.0.1:${researcher.inbound}`);
  return { planner, researcher };
}

/**
 * A child Node process whose stdout and stderr go straight to a log file: not through a pipe to
 * this process, which would parse and copy every audit line on the load generator's core.
 */
function spawnLogged(argv: readonly string[], logFile: string, env: NodeJS.ProcessEnv): ChildProcess {
  const fd = openSync(logFile, 'a');
  try {
    return spawn(process.execPath, argv, { env: { ...process.env, ...env }, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
}

async function pollReady(url: string, child: ChildProcess, logFile: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(1000) })).status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${url} not ready; log:\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * wrk pinned to the client CPU; through a proxy when `proxied` (absolute-form request targets).
 * `options.script` replaces the proxy script (a Lua script reading AIRLOCK_BENCH_* from `options.env`).
 */
export async function wrk(url: string, connections: number, duration: string, proxied: boolean, options: { readonly script?: string; readonly env?: NodeJS.ProcessEnv } = {}): Promise<WrkResult> {
  const lua = options.script ?? (proxied ? join(import.meta.dirname, 'wrk-proxy.lua') : undefined);
  const script = lua === undefined ? [] : ['-s', lua];
  const args = ['-c', CLIENT_CPU, 'wrk', '-t', '1', '-c', String(connections), '-d', duration, '--latency', ...script, url];
  const env = { ...process.env, AIRLOCK_BENCH_TARGET: 'http://researcher.bench/v1/search', ...options.env };
  const { stdout } = await run('taskset', args, { env, timeout: 120_000 });
  return parseWrkOutput(stdout);
}

/** Memory of a process from /proc: VmRSS (now), VmHWM (peak), or RssAnon (private: leaves out the node binary's shared file pages). */
export function rssMb(pid: number | undefined, field: 'VmRSS' | 'VmHWM' | 'RssAnon'): number {
  if (pid === undefined) return NaN;
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
}

/** Sum of a counter's series on a /metrics page. */
export async function counter(url: string, name: string): Promise<number> {
  const text = await (await fetch(url)).text();
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([\\d.e+-]+)$`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);
}

/** CPU seconds (user + system, all threads) a process has used so far. */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Prints a bench's report and adds it to bench/README.md, newest first (unless AIRLOCK_BENCH_WRITE=0). */
export function publishReport(report: string): void {
  console.log(`\n${report}\n`);
  if (process.env.AIRLOCK_BENCH_WRITE === '0') return;
  const readmePath = join(import.meta.dirname, 'README.md');
  const marker = '<!-- results: newest first -->';
  writeFileSync(readmePath, readFileSync(readmePath, 'utf8').replace(marker, `${marker}\n\n${report}\n`));
  console.log('results added to bench/README.md');
}
