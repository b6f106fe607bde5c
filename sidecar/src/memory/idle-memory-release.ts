import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from '@airlock/common/logging';

/**
 * Gives memory back once the sidecar is idle. V8 keeps what it grew for a burst committed — the young
 * generation (up to twice --max-semi-space-size) and old-space pages of the burst's garbage — until a
 * memory-reducing collection, and Node never schedules one (it runs no V8 idle tasks): an idle sidecar
 * stayed at its last burst's size (bench/README.md, Memory). One full memory-reducing collection runs
 * once the sidecar has started, then after each interval in which the event loop was busy less than
 * IDLE_UTILIZATION of the time following one busier: a pause of 20–45 ms (bench/README.md, Memory)
 * when little is waiting on the loop. A busy interval skips, so sustained traffic is never paused by it.
 */
export const IDLE_UTILIZATION = 0.01;

/** A full collection that also shrinks the young generation and compacts (V8's "last resort" flavour). */
export type MemoryReducingGc = () => void;

export interface IdleMemoryReleaseOptions {
  readonly intervalMs: number;
  readonly logger: Logger;
  /** Tests replace the event loop's utilization and the collection. */
  readonly utilization?: () => number;
  readonly gc?: MemoryReducingGc;
}

/**
 * The collection `gc()` runs under --expose-gc, taken without leaving the flag on: the flag set
 * changes Node's compile-cache key, and a global `gc` is not for agents' reach anyway (there is none
 * in this process's main context).
 */
export function memoryReducingGc(): MemoryReducingGc {
  setFlagsFromString('--expose-gc');
  let gc: (o: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;
  try {
    gc = runInNewContext('gc') as typeof gc;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  return () => gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}

/** The event loop's utilization since the previous call (0..1). */
function loopUtilization(): () => number {
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const u = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    return u;
  };
}

const committedMb = (): number => getHeapSpaceStatistics().reduce((sum, s) => sum + s.space_size, 0) / 1048576;

export function startIdleMemoryRelease(o: IdleMemoryReleaseOptions): { stop(): void } {
  const utilization = o.utilization ?? loopUtilization();
  const gc = o.gc ?? memoryReducingGc();
  const release = (why: string): void => {
    const before = committedMb();
    const started = performance.now();
    gc();
    o.logger.debug({ heapCommittedMb: { before: Math.round(before * 10) / 10, after: Math.round(committedMb() * 10) / 10 }, pauseMs: Math.round((performance.now() - started) * 10) / 10 }, `${why}: memory released`);
  };
  // What the start grew (module loading, the first SVID, the streams' set-up) goes now, once, before the
  // first call is likely (a pod is not ready yet): its first intervals are often busy with the start.
  release('started');
  let dirty = false;
  const timer = setInterval(() => {
    if (utilization() >= IDLE_UTILIZATION) {
      dirty = true;
      return;
    }
    if (!dirty) return;
    dirty = false;
    release('idle');
  }, o.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
