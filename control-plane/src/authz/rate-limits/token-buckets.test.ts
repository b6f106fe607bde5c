import { describe, expect, it } from 'vitest';
import { TokenBuckets, type Want } from './token-buckets.ts';

// 3 tokens, one more every 100 ms.
const SPEC = { capacity: 3, refillPerMs: 1 / 100 };
const want = (key: string, enforced = true): Want => ({ key, spec: SPEC, enforced });

describe('TokenBuckets', () => {
  it('allows a full bucket, then limits with the wait until the next token, then refills', () => {
    const b = new TokenBuckets();
    for (let i = 0; i < 3; i++) expect(b.take([want('a')], 1000).outcome).toBe('taken');
    expect(b.take([want('a')], 1000)).toEqual({ outcome: 'limited', index: 0, retryAfterMs: 100 });
    expect(b.take([want('a')], 1040)).toEqual({ outcome: 'limited', index: 0, retryAfterMs: 60 });
    expect(b.take([want('a')], 1100).outcome).toBe('taken');
    expect(b.take([want('a')], 1100).outcome).toBe('limited');
    // Refill stops at the capacity: a long quiet spell gives back a burst of 3, not more.
    for (let i = 0; i < 3; i++) expect(b.take([want('a')], 100_000).outcome).toBe('taken');
    expect(b.take([want('a')], 100_000).outcome).toBe('limited');
  });

  it('keeps keys apart', () => {
    const b = new TokenBuckets();
    for (let i = 0; i < 3; i++) b.take([want('a')], 0);
    expect(b.take([want('a')], 0).outcome).toBe('limited');
    expect(b.take([want('b')], 0).outcome).toBe('taken');
  });

  it('takes from every bucket or from none when an enforced one is empty', () => {
    const b = new TokenBuckets();
    for (let i = 0; i < 3; i++) b.take([want('a')], 0);
    // 'a' is empty: 'b' must not lose a token to a call that is refused.
    for (let i = 0; i < 5; i++) expect(b.take([want('b'), want('a')], 0)).toMatchObject({ outcome: 'limited', index: 1 });
    for (let i = 0; i < 3; i++) expect(b.take([want('b')], 0).outcome).toBe('taken');
  });

  it('lets a dry-run bucket run dry without refusing, and still charges the others', () => {
    const b = new TokenBuckets();
    for (let i = 0; i < 3; i++) expect(b.take([want('d', false), want('e')], 0).outcome).toBe('taken');
    expect(b.take([want('d', false), want('e', false)], 0)).toMatchObject({ outcome: 'would-limit', index: 0 });
    expect(b.take([want('f'), want('d', false)], 0)).toMatchObject({ outcome: 'would-limit', index: 1 });
    // 'f' was charged though 'd' was dry.
    expect(b.take([want('f')], 0).outcome).toBe('taken');
    expect(b.take([want('f')], 0).outcome).toBe('taken');
    expect(b.take([want('f')], 0).outcome).toBe('limited');
  });

  it('holds at most maxBuckets, dropping buckets that refilled first and counting the others it drops', () => {
    let evicted = 0;
    const b = new TokenBuckets(10, () => evicted++);
    for (let i = 0; i < 1000; i++) b.take([want(`k${i}`)], 0);
    expect(b.size).toBeLessThanOrEqual(10);
    expect(evicted).toBe(990);
    expect(b.evicted()).toBe(990);
    // Long after, the held buckets are full again: new keys replace them without an eviction.
    for (let i = 0; i < 10; i++) b.take([want(`n${i}`)], 10_000);
    expect(b.size).toBeLessThanOrEqual(10);
    expect(evicted).toBe(990);
  });

  it('drops idle buckets that refilled, so the map shrinks without reaching the bound', () => {
    const b = new TokenBuckets(1000);
    for (let i = 0; i < 100; i++) b.take([want(`k${i}`)], 0);
    expect(b.size).toBe(100);
    for (let i = 0; i < 100; i++) b.take([want(`later${i}`)], 10_000);
    expect(b.size).toBeLessThan(200);
  });
});
