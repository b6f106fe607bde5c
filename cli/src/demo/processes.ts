import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { AirlockError, ErrorCode } from '@airlock/common/errors';

const AIRLOCK_BIN = join(import.meta.dirname, '..', '..', 'bin', 'airlock.js');

/** A child `airlock` process whose output goes to a log file. */
export interface AirlockProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Resolves with the exit code once the process is gone. */
  readonly exited: Promise<number | null>;
  /** Resolves with the first JSON log line whose `msg` is `message` (e.g. one naming bound ports). */
  logLine(message: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/**
 * Node options a sidecar runs with, as README.md ("Sidecar memory") recommends deploying it: V8's
 * young generation capped at 8 MB semi-spaces (by default it grows with the host's memory, to
 * 64–128 MB under load, for no measurable req/s: bench/README.md, Memory).
 */
export const SIDECAR_NODE_OPTIONS = '--max-semi-space-size=8';

/**
 * The environment of an `airlock <args>` child: ours, then `extra`; a sidecar gets SIDECAR_NODE_OPTIONS
 * first; every process two malloc arenas unless set (as the image, the chart and injection run them:
 * docs/soak.md).
 */
export function airlockEnv(args: readonly string[], extra: NodeJS.ProcessEnv = {}, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { MALLOC_ARENA_MAX: '2', ...base, ...extra };
  if (args[0] === 'sidecar') env.NODE_OPTIONS = [SIDECAR_NODE_OPTIONS, env.NODE_OPTIONS].filter((v) => v !== undefined && v !== '').join(' ');
  return env;
}

/**
 * `wrap`: a command that execs the rest in place (so signals reach airlock), e.g. `ip netns exec NS
 * setpriv --reuid=…` for a test that runs a sidecar in another network namespace as another user.
 */
export function spawnAirlock(name: string, args: readonly string[], o: { logFile: string; env?: NodeJS.ProcessEnv; wrap?: readonly string[] }): AirlockProcess {
  const log = createWriteStream(o.logFile, { flags: 'a' });
  const argv = [...(o.wrap ?? []), process.execPath, AIRLOCK_BIN, ...args];
  const child = spawn(argv[0] ?? process.execPath, argv.slice(1), {
    env: airlockEnv(args, o.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (!line.startsWith('{')) return;
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      return;
    }
    for (const wake of waiters) wake();
  });
  const logLine = (message: string, timeoutMs = 20_000): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = lines.find((l) => l.msg === message);
        if (found === undefined) return;
        finish();
        resolve(found);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new AirlockError(ErrorCode.Internal, `${name}: no "${message}" log line after ${timeoutMs} ms; last log lines:\n${readTail(o.logFile)}`));
      }, timeoutMs);
      void exited.then(() => {
        setTimeout(() => {
          if (!waiters.has(check)) return;
          finish();
          reject(new AirlockError(ErrorCode.Internal, `${name} exited before logging "${message}"; last log lines:\n${readTail(o.logFile)}`));
        }, 50);
      });
      const finish = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  return {
    name,
    child,
    logFile: o.logFile,
    exited,
    logLine,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls a /readyz URL until it answers 200; fails early when the process exits. */
export async function waitReady(p: AirlockProcess, url: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | null | undefined;
  void p.exited.then((code) => (exitCode = code));
  while (Date.now() < deadline) {
    if (exitCode !== undefined) break;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  const tail = readTail(p.logFile);
  const why = exitCode !== undefined ? `exited with code ${String(exitCode)}` : `not ready after ${timeoutMs} ms`;
  throw new AirlockError(ErrorCode.Internal, `${p.name} ${why}; last log lines:\n${tail}`);
}

export function readTail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
