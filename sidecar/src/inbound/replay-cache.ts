/**
 * The decision ids of tickets already admitted, each kept until its ticket expires: a ticket is
 * admitted once. Bounded: when full of unexpired ids it admits nothing more (the call asks the
 * control plane instead); it never forgets an id early, which would let that ticket in twice.
 */
export class ReplayCache {
  readonly #max: number;
  /** The ids held now. */
  readonly #seen = new Set<string>();
  /**
   * The same ids with their tickets' expiry (ms), in insertion order (about expiry order, tickets
   * sharing one lifetime), from #head on. A queue rather than iterating a Map from its start: V8
   * keeps a deleted Map entry as a hole until the table is rebuilt, and every sweep walked the
   * holes of the ids already dropped (3.7 µs per admitted call at 3,000 calls/s).
   */
  #ids: string[] = [];
  #expiries: number[] = [];
  #head = 0;

  constructor(max = 100_000) {
    this.#max = max;
  }

  /** Records `id` until `expiresAt`: 'new', 'replayed' (seen before), or 'full'. */
  admit(id: string, expiresAt: number, now: number): 'new' | 'replayed' | 'full' {
    this.#sweep(now);
    if (this.#seen.has(id)) return 'replayed';
    if (this.#seen.size >= this.#max) return 'full';
    this.#seen.add(id);
    this.#ids.push(id);
    this.#expiries.push(expiresAt);
    return 'new';
  }

  get size(): number {
    return this.#seen.size;
  }

  /** Drops expired ids from the oldest on (a longer-lived one ahead holds the rest until it expires: bounded by max). */
  #sweep(now: number): void {
    const ids = this.#ids;
    const expiries = this.#expiries;
    let head = this.#head;
    while (head < ids.length && (expiries[head] ?? 0) <= now) {
      this.#seen.delete(ids[head] ?? '');
      head++;
    }
    // The dropped front is cut off once it is most of the queue: amortized O(1) per id.
    if (head > 1024 && head * 2 > ids.length) {
      this.#ids = ids.slice(head);
      this.#expiries = expiries.slice(head);
      head = 0;
    }
    this.#head = head;
  }
}
