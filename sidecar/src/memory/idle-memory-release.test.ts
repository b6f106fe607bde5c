import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createRootLogger } from '@airlock/common/logging';
import { IDLE_UTILIZATION, startIdleMemoryRelease } from './idle-memory-release.ts';

const logger = createRootLogger({ process: 'test', level: 'silent' });

describe('idle memory release', () => {
  afterEach(() => void vi.useRealTimers());

  it('collects once at the start, then once each time the loop goes idle after work, never while busy, not again while idle', () => {
    vi.useFakeTimers();
    const load: number[] = [0.001, 0.002, 0.5, 0.9, 0.002, 0, 0, IDLE_UTILIZATION, 0.003, 0];
    const gc = vi.fn();
    const release = startIdleMemoryRelease({ intervalMs: 1000, logger, gc, utilization: () => load.shift() ?? 0 });
    expect(gc).toHaveBeenCalledTimes(1);
    const collectionsAfterEachTick: number[] = [];
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(1000);
      collectionsAfterEachTick.push(gc.mock.calls.length);
    }
    release.stop();
    // idle; idle; busy; busy; idle → gc; idle; idle; busy (at the threshold); idle → gc; idle.
    expect(collectionsAfterEachTick).toEqual([1, 1, 1, 1, 2, 2, 2, 2, 3, 3]);
  });

  it('the collection gives back the young generation a burst grew, and leaves no gc() where agents could reach it', async () => {
    const script = `
      import { getHeapSpaceStatistics } from 'node:v8';
      import { memoryReducingGc } from ${JSON.stringify(fileURLToPath(new URL('./idle-memory-release.ts', import.meta.url)))};
      const newSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
      // A burst: short-lived objects, some kept a while, as requests in flight are.
      let kept = [];
      for (let i = 0; i < 200000; i++) { kept.push({ i, s: 'x'.repeat(i % 64) }); if (kept.length > 20000) kept = []; }
      kept = [];
      const before = newSpace();
      memoryReducingGc()();
      console.log(JSON.stringify({ before, after: newSpace(), globalGc: typeof globalThis.gc }));
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--max-semi-space-size=8', '--input-type=module', '-e', script]);
    const r = JSON.parse(stdout) as { before: number; after: number; globalGc: string };
    expect(r.before).toBeGreaterThan(2 * 1048576);
    expect(r.after).toBeLessThan(r.before / 2);
    expect(r.globalGc).toBe('undefined');
  });
});
