/**
 * The decision ids of tickets already admitted, each kept until its ticket expires: a ticket is
 * admitted once. Bounded: when full of unexpired ids it admits nothing more (the call asks the
 * control plane instead); it never forgets an id early, which would let that ticket in twice.
 */
export class ReplayCache {
  readonly #max: number;
  /** Decision id → its ticket's expiry (ms), in insertion order: about expiry order, tickets sharing one lifetime. */
  readonly #seen = new Map<string, number>();

  constructor(max = 100_000) {
    this.#max = max;
  }

  /** Records `id` until `expiresAt`: 'new', 'replayed' (seen before), or 'full'. */
  admit(id: string, expiresAt: number, now: number): 'new' | 'replayed' | 'full' {
    this.#sweep(now);
    if (this.#seen.has(id)) return 'replayed';
    if (this.#seen.size >= this.#max) return 'full';
    this.#seen.set(id, expiresAt);
    return 'new';
  }

  get size(): number {
    return this.#seen.size;
  }

  /** Drops expired ids from the oldest on (a longer-lived one ahead holds the rest until it expires: bounded by max). */
  #sweep(now: number): void {
    for (const [id, expiresAt] of this.#seen) {
      if (expiresAt > now) return;
      this.#seen.delete(id);
    }
  }
}
