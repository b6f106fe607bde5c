import type { DecisionState } from '../authz/decision-state.ts';
import type { QuarantineRecord, Store } from '../store/store.ts';

/**
 * Quarantined identities: written to the store first, then published in the decision snapshot, so
 * every decision naming one is denied from the very next call (here; on other replicas as soon as
 * their watch delivers). Unlike a revocation it is reversible and keeps the certificates valid.
 */
export class Quarantines {
  readonly #store: Store;
  readonly #decisions: DecisionState;
  readonly #listeners = new Set<() => void>();

  private constructor(store: Store, decisions: DecisionState) {
    this.#store = store;
    this.#decisions = decisions;
  }

  static async load(store: Store, decisions: DecisionState): Promise<Quarantines> {
    const q = new Quarantines(store, decisions);
    await q.follow();
    return q;
  }

  /** In force at `now`: set, not released, not past its `until`. */
  isQuarantined(spiffeId: string, now = Date.now()): boolean {
    const q = this.#decisions.current().quarantined.get(spiffeId);
    return q !== undefined && (q.until === undefined || q.until > now);
  }

  list(now = Date.now()): QuarantineRecord[] {
    return [...this.#decisions.current().quarantined.values()].filter((q) => q.until === undefined || q.until > now);
  }

  async quarantine(record: QuarantineRecord): Promise<void> {
    await this.#store.quarantine(record);
    this.#decisions.replace({ quarantined: new Map(this.#decisions.current().quarantined).set(record.spiffeId, record) });
    this.#changed();
  }

  /** Calls `listener` after each change (set, released, or followed from another replica); returns an unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #changed(): void {
    for (const l of this.#listeners) l();
  }

  async release(spiffeId: string): Promise<QuarantineRecord | undefined> {
    const released = await this.#store.release(spiffeId);
    const next = new Map(this.#decisions.current().quarantined);
    next.delete(spiffeId);
    this.#decisions.replace({ quarantined: next });
    this.#changed();
    return released;
  }

  /** Reads them again from the store (at start, and when another replica set or released one). */
  async follow(): Promise<void> {
    const all = await this.#store.listQuarantines();
    this.#decisions.replace({ quarantined: new Map(all.map((q) => [q.spiffeId, q])) });
    this.#changed();
  }
}
