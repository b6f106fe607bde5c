import type { BaselineFlowRecord, BaselineRecord } from '../store/store.ts';

/** Flows kept per identity, and identities kept, by default: what the learner's memory is bounded by (settings baselineMaxFlows, baselineMaxIdentities). */
export const MAX_FLOWS_PER_IDENTITY = 1_000;
export const MAX_IDENTITIES = 10_000;
/** Call rates are counted per minute, or per learning period when that is shorter (a test's 2s). */
const RATE_WINDOW_MS = 60_000;

/** What learning and after make of one call. */
export type Observation =
  | { readonly kind: 'learning' | 'normal' | 'untracked' }
  /** After learning: a flow not learned (`repeat`: seen and flagged before, not accepted; `remembered`: false at the flow bound). */
  | { readonly kind: 'new-flow'; readonly repeat: boolean; readonly remembered: boolean }
  /** After learning: a learned flow called `count` times in this window, over `factor` × its learned `peak`. */
  | { readonly kind: 'rate'; readonly repeat: boolean; readonly count: number; readonly peak: number; readonly windowMs: number };

interface FlowState {
  normal: boolean;
  firstSeen: number;
  lastSeen: number;
  calls: number;
  peak: number;
  acceptedBy: string | undefined;
  /** The window being counted (start / windowMs) and its calls so far. */
  window: number;
  inWindow: number;
  /** The window a rate anomaly was last raised in: one per window and flow. */
  flaggedWindow: number;
}

interface IdentityState {
  startedAt: number;
  updatedAt: number;
  windowMs: number;
  droppedFlows: number;
  readonly flows: Map<string, FlowState>;
}

export interface LearnerLimits {
  readonly maxFlows: number;
  readonly maxIdentities: number;
}

/**
 * The flows each identity uses and their peak rates, learned for a period from its first call, then
 * compared against. Memory is bounded: at most `maxIdentities` identities (a new one past it is not
 * learned nor judged: counted by `onDropped('identity')`), at most `maxFlows` flows each (a new flow
 * past it is not kept: while learning it is forgotten, after learning it is still an anomaly, raised
 * again each time: `onDropped('flow')`). Only structural changes (a flow added or flagged, a peak
 * raised, an accept) mark an identity for the next write to the store.
 */
export class Learner {
  readonly #ids = new Map<string, IdentityState>();
  readonly #dirty = new Set<string>();
  readonly #limits: LearnerLimits;
  readonly #onDropped: (what: 'flow' | 'identity') => void;

  constructor(limits: LearnerLimits = { maxFlows: MAX_FLOWS_PER_IDENTITY, maxIdentities: MAX_IDENTITIES }, onDropped: (what: 'flow' | 'identity') => void = () => undefined) {
    this.#limits = limits;
    this.#onDropped = onDropped;
  }

  get size(): number {
    return this.#ids.size;
  }

  /** One allowed call of `identity` on `flow` at `now`, under a Baseline learning for `learnMs` and tolerating `factor` × a peak. */
  observe(identity: string, flow: string, learnMs: number, factor: number, now: number): Observation {
    let st = this.#ids.get(identity);
    if (st === undefined) {
      if (this.#ids.size >= this.#limits.maxIdentities) {
        this.#onDropped('identity');
        return { kind: 'untracked' };
      }
      st = { startedAt: now, updatedAt: now, windowMs: Math.min(RATE_WINDOW_MS, learnMs), droppedFlows: 0, flows: new Map() };
      this.#ids.set(identity, st);
      this.#dirty.add(identity);
    }
    const learning = now < st.startedAt + learnMs;
    const window = Math.floor(now / st.windowMs);
    let f = st.flows.get(flow);
    if (f === undefined) {
      if (st.flows.size >= this.#limits.maxFlows) {
        st.droppedFlows++;
        this.#onDropped('flow');
        return learning ? { kind: 'learning' } : { kind: 'new-flow', repeat: false, remembered: false };
      }
      f = { normal: learning, firstSeen: now, lastSeen: now, calls: 1, peak: learning ? 1 : 0, acceptedBy: undefined, window, inWindow: 1, flaggedWindow: -1 };
      st.flows.set(flow, f);
      this.#touch(identity, st, now);
      return learning ? { kind: 'learning' } : { kind: 'new-flow', repeat: false, remembered: true };
    }
    f.calls++;
    f.lastSeen = now;
    if (f.window === window) f.inWindow++;
    else {
      f.window = window;
      f.inWindow = 1;
    }
    if (!f.normal) return { kind: 'new-flow', repeat: true, remembered: true };
    if (learning) {
      if (f.inWindow > f.peak) {
        f.peak = f.inWindow;
        this.#touch(identity, st, now);
      }
      return { kind: 'learning' };
    }
    if (f.inWindow > Math.max(f.peak, 1) * factor) {
      const repeat = f.flaggedWindow === window;
      f.flaggedWindow = window;
      return { kind: 'rate', repeat, count: f.inWindow, peak: f.peak, windowMs: st.windowMs };
    }
    return { kind: 'normal' };
  }

  /** Makes `flow` of `identity` normal (an operator accepted it), its rate so far its peak; false when not known. */
  accept(identity: string, flow: string, by: string, now: number): boolean {
    const st = this.#ids.get(identity);
    const f = st?.flows.get(flow);
    if (st === undefined || f === undefined) return false;
    f.normal = true;
    f.acceptedBy = by;
    f.peak = Math.max(f.peak, f.inWindow, 1);
    this.#touch(identity, st, now);
    return true;
  }

  /** Forgets what was learned of `identity`: it learns again from its next call. */
  reset(identity: string): boolean {
    this.#dirty.delete(identity);
    return this.#ids.delete(identity);
  }

  get(identity: string): BaselineRecord | undefined {
    const st = this.#ids.get(identity);
    return st === undefined ? undefined : recordOf(identity, st);
  }

  list(): BaselineRecord[] {
    return [...this.#ids.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([id, st]) => recordOf(id, st));
  }

  /** The records changed since the last call, and forgets that they were. */
  takeDirty(): BaselineRecord[] {
    const out: BaselineRecord[] = [];
    for (const id of this.#dirty) {
      const st = this.#ids.get(id);
      if (st !== undefined) out.push(recordOf(id, st));
    }
    this.#dirty.clear();
    return out;
  }

  /** Marks records to be written again (a write that failed). */
  markDirty(identities: readonly string[]): void {
    for (const id of identities) if (this.#ids.has(id)) this.#dirty.add(id);
  }

  /** What the store kept (at start): at most the bounds, the rest ignored and counted. */
  restore(records: readonly BaselineRecord[]): void {
    for (const r of records) {
      if (!this.#ids.has(r.spiffeId) && this.#ids.size >= this.#limits.maxIdentities) {
        this.#onDropped('identity');
        continue;
      }
      const flows = new Map<string, FlowState>();
      for (const f of r.flows.slice(0, this.#limits.maxFlows)) {
        flows.set(f.flow, { normal: f.normal, firstSeen: f.firstSeen, lastSeen: f.lastSeen, calls: f.calls, peak: f.peak, acceptedBy: f.acceptedBy, window: -1, inWindow: 0, flaggedWindow: -1 });
      }
      this.#ids.set(r.spiffeId, { startedAt: r.startedAt, updatedAt: r.updatedAt, windowMs: r.windowMs, droppedFlows: r.droppedFlows, flows });
    }
  }

  /**
   * Another replica's record united with this one's, within the bounds: its flows added, a flow
   * normal in either normal, the higher peak, the earlier start. Nothing is marked to write back
   * (it is in the store already; this replica writes the union with its next change).
   */
  merge(r: BaselineRecord): void {
    const st = this.#ids.get(r.spiffeId);
    if (st === undefined) {
      this.restore([r]);
      this.#dirty.delete(r.spiffeId);
      return;
    }
    st.startedAt = Math.min(st.startedAt, r.startedAt);
    st.updatedAt = Math.max(st.updatedAt, r.updatedAt);
    for (const f of r.flows) {
      const mine = st.flows.get(f.flow);
      if (mine === undefined) {
        if (st.flows.size >= this.#limits.maxFlows) continue;
        st.flows.set(f.flow, { normal: f.normal, firstSeen: f.firstSeen, lastSeen: f.lastSeen, calls: f.calls, peak: f.peak, acceptedBy: f.acceptedBy, window: -1, inWindow: 0, flaggedWindow: -1 });
        continue;
      }
      mine.normal ||= f.normal;
      mine.peak = Math.max(mine.peak, f.peak);
      mine.acceptedBy ??= f.acceptedBy;
      mine.firstSeen = Math.min(mine.firstSeen, f.firstSeen);
      mine.lastSeen = Math.max(mine.lastSeen, f.lastSeen);
      mine.calls = Math.max(mine.calls, f.calls);
    }
  }

  #touch(identity: string, st: IdentityState, now: number): void {
    st.updatedAt = now;
    this.#dirty.add(identity);
  }
}

function recordOf(spiffeId: string, st: IdentityState): BaselineRecord {
  const flows: BaselineFlowRecord[] = [...st.flows.entries()].map(([flow, f]) => ({
    flow,
    normal: f.normal,
    firstSeen: f.firstSeen,
    lastSeen: f.lastSeen,
    calls: f.calls,
    peak: f.peak,
    ...(f.acceptedBy === undefined ? {} : { acceptedBy: f.acceptedBy }),
  }));
  return { spiffeId, startedAt: st.startedAt, updatedAt: st.updatedAt, windowMs: st.windowMs, flows, droppedFlows: st.droppedFlows };
}
