import { describe, expect, it } from 'vitest';
import { ReplayCache } from './replay-cache.ts';

describe('ReplayCache', () => {
  it('admits an id once until it expires, and forgets it only then', () => {
    const cache = new ReplayCache();
    expect(cache.admit('a', 2000, 0)).toBe('new');
    expect(cache.admit('a', 2000, 1999)).toBe('replayed');
    expect(cache.admit('a', 2000, 2000)).toBe('new');
  });

  it('keeps every unexpired id through many sweeps and the queue cut (thousands of ids, a steady rate)', () => {
    const cache = new ReplayCache();
    const ttl = 2000;
    // 5 ids per ms over 10 s: the expired front is cut off many times over.
    for (let i = 0; i < 50_000; i++) {
      const now = Math.floor(i / 5);
      expect(cache.admit(`id-${i}`, now + ttl, now)).toBe('new');
      // An id admitted just under the lifetime ago, and the oldest one still held, are both still refused.
      if (i >= 9_995) {
        expect(cache.admit(`id-${i - 9_995}`, now + ttl, now)).toBe('replayed');
      }
    }
    // Only the ids of the last lifetime are held: the expired ones were dropped.
    expect(cache.size).toBeLessThanOrEqual(10_005);
    expect(cache.size).toBeGreaterThanOrEqual(9_995);
  });

  it('is never emptied early by a longer-lived id ahead: it holds the rest until it expires', () => {
    const cache = new ReplayCache();
    expect(cache.admit('long', 10_000, 0)).toBe('new');
    for (let i = 0; i < 3000; i++) expect(cache.admit(`short-${i}`, 100, 0)).toBe('new');
    expect(cache.admit('short-5', 100, 5000)).toBe('replayed');
    expect(cache.admit('later', 20_000, 10_000)).toBe('new');
    expect(cache.admit('short-5', 100, 10_000)).toBe('new');
    expect(cache.admit('long', 10_000, 10_000)).toBe('new');
  });

  it('admits nothing more when full of unexpired ids, and again once they expire', () => {
    const cache = new ReplayCache(3);
    for (const id of ['a', 'b', 'c']) expect(cache.admit(id, 100, 0)).toBe('new');
    expect(cache.admit('d', 100, 50)).toBe('full');
    expect(cache.admit('a', 100, 50)).toBe('replayed');
    expect(cache.admit('d', 200, 100)).toBe('new');
    expect(cache.size).toBe(1);
  });
});
