import { parseSpiffeId, type SpiffeId } from '@airlock/common/spiffe';
import type { Logger } from '@airlock/common/logging';
import type { Labels } from '@airlock/common/labels';
import type { DecisionSnapshot, DecisionState } from '../authz/decision-state.ts';
import type { QuarantineRecord, Store } from '../store/store.ts';
import { compileSelectors, quarantineOf, targetMatches, type QuarantineTarget } from './quarantine-target.ts';

/**
 * At most this many identities are pushed to sidecars as quarantined (a selector can match many):
 * the push is one message per sidecar. Decisions deny every match whatever this cuts.
 */
export const MAX_PUSHED_QUARANTINED = 10_000;

/**
 * Quarantines (of an identity, a segment or a label): written to the store first, then published in
 * the decision snapshot, so every decision naming a contained identity is denied from the very next
 * call (here; on other replicas as soon as their watch delivers). Unlike a revocation it is
 * reversible and keeps the certificates valid. Records are keyed by target (quarantine-target.ts).
 */
export class Quarantines {
  readonly #store: Store;
  readonly #decisions: DecisionState;
  readonly #listeners = new Set<() => void>();
  readonly #log: Logger | undefined;
  /** The identities last pushed, joined (undefined: push whatever they are): a registration or policy change that matches no one new pushes nothing. */
  #pushed: string | undefined;
  #recheck: NodeJS.Immediate | undefined;
  /** identities() as last resolved, and on which snapshot. */
  #resolved: { readonly snapshot: DecisionSnapshot; readonly validUntil: number; readonly identities: readonly string[] } | undefined;

  private constructor(store: Store, decisions: DecisionState, log: Logger | undefined) {
    this.#store = store;
    this.#decisions = decisions;
    this.#log = log;
    // An agent registered (or a policy changing segments) may fall under a selector: sidecars hear of it.
    decisions.onReplace((part) => {
      if ((part.agents === undefined && part.engine === undefined) || decisions.current().quarantineSelectors === undefined || this.#recheck !== undefined) return;
      this.#recheck = setImmediate(() => {
        this.#recheck = undefined;
        this.#changed();
      });
      this.#recheck.unref();
    });
  }

  static async load(store: Store, decisions: DecisionState, log?: Logger): Promise<Quarantines> {
    const q = new Quarantines(store, decisions, log);
    await q.follow();
    return q;
  }

  /** In force at `now` on this identity: set on it, or on a segment or label of it. */
  isQuarantined(spiffeId: string, now = Date.now()): boolean {
    return this.quarantineOf(parseSpiffeId(spiffeId), now) !== undefined;
  }

  /** The quarantine that contains `id` at `now`, if any. */
  quarantineOf(id: SpiffeId, now = Date.now()): QuarantineRecord | undefined {
    return quarantineOf(this.#decisions.current(), id, now);
  }

  /** Every quarantine in force (identities and selectors), keyed as stored. */
  list(now = Date.now()): QuarantineRecord[] {
    return [...this.#decisions.current().quarantined.values()].filter((q) => q.until === undefined || q.until > now);
  }

  /**
   * The registered identities contained now (selectors resolved against the agents registered and
   * the segments in force; sidecars hold no segment data), and identities quarantined by name
   * though not registered here; at most MAX_PUSHED_QUARANTINED.
   */
  identities(now = Date.now()): readonly string[] {
    const snapshot = this.#decisions.current();
    // Every sidecar's stream asks at each push: resolved once per snapshot (until a quarantine in it ends).
    const cached = this.#resolved;
    if (cached !== undefined && cached.snapshot === snapshot && now < cached.validUntil) return cached.identities;
    const out = new Set<string>();
    let validUntil = Number.POSITIVE_INFINITY;
    for (const q of this.list(now)) {
      if (q.until !== undefined) validUntil = Math.min(validUntil, q.until);
      if (q.spiffeId.startsWith('spiffe://')) out.add(q.spiffeId);
    }
    if (snapshot.quarantineSelectors !== undefined) {
      for (const [id, labels] of registered(snapshot)) {
        if (out.size >= MAX_PUSHED_QUARANTINED) {
          this.#log?.warn({ limit: MAX_PUSHED_QUARANTINED }, 'more quarantined identities than are pushed to sidecars: their decisions are still denied');
          break;
        }
        if (quarantineOf(snapshot, id, now, labels) !== undefined) out.add(id.uri);
      }
    }
    const identities = [...out].slice(0, MAX_PUSHED_QUARANTINED);
    this.#resolved = { snapshot, validUntil, identities };
    return identities;
  }

  /** The registered identities `target` names now (an identity target: itself, registered or not), sorted. */
  matching(target: QuarantineTarget): string[] {
    if (target.kind === 'identity') return [target.uri];
    const snapshot = this.#decisions.current();
    const out: string[] = [];
    for (const [id, labels] of registered(snapshot)) if (targetMatches(snapshot, target, id, labels)) out.push(id.uri);
    return out.sort();
  }

  async quarantine(record: QuarantineRecord): Promise<void> {
    await this.#store.quarantine(record);
    this.#publish(new Map(this.#decisions.current().quarantined).set(record.spiffeId, record));
  }

  /** Calls `listener` after each change (set, released, followed from another replica, or a registration a selector matches); returns an unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #publish(quarantined: Map<string, QuarantineRecord>): void {
    const selectors = compileSelectors(quarantined);
    this.#decisions.replace(selectors === undefined ? { quarantined, quarantineSelectors: undefined } : { quarantined, quarantineSelectors: selectors });
    this.#pushed = undefined;
    this.#changed();
  }

  #changed(): void {
    if (this.#listeners.size === 0) return;
    const now = this.identities().join('\n');
    if (now === this.#pushed) return;
    this.#pushed = now;
    for (const l of this.#listeners) l();
  }

  /** Ends the quarantine stored under `key` (an identity, or a selector's key). */
  async release(key: string): Promise<QuarantineRecord | undefined> {
    const released = await this.#store.release(key);
    const next = new Map(this.#decisions.current().quarantined);
    next.delete(key);
    this.#publish(next);
    return released;
  }

  /** Reads them again from the store (at start, and when another replica set or released one). */
  async follow(): Promise<void> {
    const all = await this.#store.listQuarantines();
    this.#publish(new Map(all.map((q) => [q.spiffeId, q])));
  }
}

/** The registered agents, as parsed identities with their attested labels. */
function* registered(snapshot: DecisionSnapshot): Generator<[SpiffeId, Labels]> {
  for (const agent of snapshot.agents.values()) {
    let id: SpiffeId;
    try {
      id = parseSpiffeId(agent.spiffeId);
    } catch {
      continue; // stored before its trust domain changed: no decision names it
    }
    yield [id, agent.labels ?? {}];
  }
}
