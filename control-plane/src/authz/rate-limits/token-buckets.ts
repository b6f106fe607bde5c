/** What a bucket holds and how fast it fills: `capacity` tokens, `refillPerMs` tokens a millisecond. */
export interface BucketSpec {
  readonly capacity: number;
  readonly refillPerMs: number;
}

/** One token wanted from the bucket `key`; an `enforced` one lacking a token stops the whole take. */
export interface Want {
  readonly key: string;
  readonly spec: BucketSpec;
  readonly enforced: boolean;
}

/** Of a take: the first enforced want that lacked a token, else the first dry-run one; with when its bucket has one again. */
export type TakeResult =
  | { readonly outcome: 'taken' }
  | { readonly outcome: 'limited' | 'would-limit'; readonly index: number; readonly retryAfterMs: number };

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  at: number;
  /** When it is full again if nothing is taken: from then on it is the same as no bucket. */
  fullAt: number;
}

/** Buckets kept at most by default: a few hundred bytes each with its key (two SPIFFE IDs at most), so some tens of MB at worst. */
export const DEFAULT_MAX_BUCKETS = 100_000;

/**
 * Token buckets by key, in memory, bounded: at most `maxBuckets`. A bucket that has filled up
 * again is dropped as it is met (a new bucket starts full, so nothing changes); when the map is at
 * its bound the least recently used one goes, which can only make a limit more lenient for that key
 * (it starts full again): `evicted()` counts those. Synchronous, so a take of several buckets is atomic.
 */
export class TokenBuckets {
  readonly #max: number;
  /** In order of last use (a use moves a bucket to the end). */
  readonly #buckets = new Map<string, Bucket>();
  #evicted = 0;
  readonly #onEvict: () => void;

  constructor(maxBuckets = DEFAULT_MAX_BUCKETS, onEvict: () => void = () => undefined) {
    if (!Number.isInteger(maxBuckets) || maxBuckets < 1) throw new RangeError('maxBuckets must be a whole number ≥ 1');
    this.#max = maxBuckets;
    this.#onEvict = onEvict;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** Buckets dropped at the bound before they had filled up again. */
  evicted(): number {
    return this.#evicted;
  }

  /**
   * One token from each wanted bucket, or none: when an enforced want's bucket is empty nothing is
   * taken ('limited'); a dry-run want's empty bucket lets the others be taken ('would-limit').
   */
  take(wants: readonly Want[], now: number): TakeResult {
    const buckets = wants.map((w) => this.#current(w, now));
    try {
      return this.#take(wants, buckets, now);
    } finally {
      // After the take, so no bucket of it is dropped while in use.
      this.#makeRoom(now);
    }
  }

  #take(wants: readonly Want[], buckets: readonly Bucket[], now: number): TakeResult {
    let wouldLimit: TakeResult | undefined;
    for (let i = 0; i < wants.length; i++) {
      const b = buckets[i] as Bucket;
      const w = wants[i] as Want;
      if (b.tokens >= 1) continue;
      const result = { outcome: w.enforced ? 'limited' : 'would-limit', index: i, retryAfterMs: Math.max(1, Math.ceil((1 - b.tokens) / w.spec.refillPerMs)) } as const;
      if (w.enforced) return result;
      wouldLimit ??= result;
    }
    for (let i = 0; i < wants.length; i++) {
      const b = buckets[i] as Bucket;
      const w = wants[i] as Want;
      if (b.tokens < 1) continue;
      b.tokens -= 1;
      b.fullAt = now + (w.spec.capacity - b.tokens) / w.spec.refillPerMs;
    }
    return wouldLimit ?? { outcome: 'taken' };
  }

  /** The bucket of `want`, refilled up to `now` and moved to the end of the use order (created full). */
  #current(want: Want, now: number): Bucket {
    const map = this.#buckets;
    const found = map.get(want.key);
    if (found !== undefined) {
      map.delete(want.key);
      map.set(want.key, found);
      // A spec changed by a new policy version applies from now: the level is capped to the new size.
      found.tokens = Math.min(want.spec.capacity, found.tokens + Math.max(0, now - found.at) * want.spec.refillPerMs);
      found.at = now;
      return found;
    }
    const bucket = { tokens: want.spec.capacity, at: now, fullAt: now };
    map.set(want.key, bucket);
    return bucket;
  }

  /** Drops the least recently used buckets that are full again (a few per call), then, over the bound, the least recently used ones. */
  #makeRoom(now: number): void {
    const map = this.#buckets;
    let looked = 0;
    for (const [key, b] of map) {
      if (looked++ >= 4 || b.fullAt > now) break;
      map.delete(key);
    }
    for (const key of map.keys()) {
      if (map.size <= this.#max) return;
      map.delete(key);
      this.#evicted++;
      this.#onEvict();
    }
  }
}
