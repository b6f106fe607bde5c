import { createHash, randomUUID } from 'node:crypto';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { canonicalJson } from '../../audit/canonical.ts';
import type { ApprovalDoc } from '../../policy/types.ts';

/** The exact call an approval is for; its hash is what a held call must match to be released. */
export interface ApprovalCall {
  readonly source: string;
  /** The destination agent's SPIFFE ID, or the external host. */
  readonly destination: string;
  readonly port: number;
  readonly method: string;
  readonly path: string;
  readonly mcpMethod: string;
  readonly tool: string;
  /** The tools/call arguments, parsed (hashed in canonical form: key order and spacing do not matter). */
  readonly arguments: Readonly<Record<string, unknown>>;
}

export type ApprovalState = 'pending' | 'approved' | 'denied' | 'timeout';

export interface ApprovalRecord {
  readonly id: string;
  /** sha256 of the canonical call (ApprovalCall). */
  readonly binding: string;
  readonly call: ApprovalCall;
  /** The decision that held it (its audit event). */
  readonly decisionId: string;
  readonly policy: string;
  readonly rule: string;
  /** The admin role that may decide it. */
  readonly role: ApprovalDoc['role'];
  readonly requestedAt: number;
  readonly expiresAt: number;
  state: ApprovalState;
  decidedBy?: string;
  decidedAt?: number;
  reason?: string;
}

/** How a held call's wait ended: released by an approval, or not (denied, timed out, unknown, not this call). */
export type ApprovalOutcome =
  | { readonly state: 'approved'; readonly record: ApprovalRecord }
  | { readonly state: 'denied' | 'timeout'; readonly record: ApprovalRecord }
  | { readonly state: 'unknown'; readonly why: string };

export interface ApprovalLimits {
  /** Pending approvals one source agent may hold at once. */
  readonly perAgent: number;
  /** Pending approvals in all (each holds a call, a connection and a timer). */
  readonly total: number;
}

export const DEFAULT_APPROVAL_LIMITS: ApprovalLimits = { perAgent: 8, total: 256 };

/** An approved call's inbound check (at the destination's sidecar) must come within this. */
const RELEASE_TTL_MS = 60_000;

export function bindingOf(call: ApprovalCall): string {
  return createHash('sha256').update(canonicalJson(call)).digest('hex');
}

interface Waiter {
  readonly resolve: (outcome: ApprovalOutcome) => void;
}

/**
 * The calls held for a human approval, in this replica's memory (README: one replica holds a
 * call, and is the one to decide it). Each approval covers exactly one call: the held call's wait
 * takes it once (a second wait, or one for another call, is `unknown`), and an approved call's
 * inbound check (the destination's sidecar asking) takes its release once. Bounded per source agent
 * and in all: beyond, a call is refused (fail closed), never let through.
 */
export class Approvals {
  readonly #limits: ApprovalLimits;
  readonly #now: () => number;
  readonly #onTimeout: (record: ApprovalRecord) => void;
  readonly #byId = new Map<string, ApprovalRecord>();
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #waiters = new Map<string, Waiter>();
  /** Approved calls released at their source, waiting for their inbound check: binding → expiry, count. */
  readonly #released = new Map<string, { until: number; count: number }>();

  constructor(o: { readonly limits?: ApprovalLimits; readonly now?: () => number; readonly onTimeout?: (record: ApprovalRecord) => void } = {}) {
    this.#limits = o.limits ?? DEFAULT_APPROVAL_LIMITS;
    this.#now = o.now ?? Date.now;
    this.#onTimeout = o.onTimeout ?? (() => undefined);
  }

  /** Holds a call; throws TooManyRequests beyond the bounds (the caller refuses the call). */
  request(call: ApprovalCall, doc: ApprovalDoc, held: { readonly decisionId: string; readonly policy: string; readonly rule: string }): ApprovalRecord {
    let pending = 0;
    let ofAgent = 0;
    for (const r of this.#byId.values()) {
      if (r.state !== 'pending') continue;
      pending++;
      if (r.call.source === call.source) ofAgent++;
    }
    if (pending >= this.#limits.total) throw new AirlockError(ErrorCode.TooManyRequests, `${this.#limits.total} calls are already waiting for an approval: this one is refused`);
    if (ofAgent >= this.#limits.perAgent) throw new AirlockError(ErrorCode.TooManyRequests, `${call.source} already has ${this.#limits.perAgent} calls waiting for an approval: this one is refused`);
    const now = this.#now();
    const record: ApprovalRecord = { id: randomUUID(), binding: bindingOf(call), call, ...held, role: doc.role, requestedAt: now, expiresAt: now + doc.timeoutMs, state: 'pending' };
    this.#byId.set(record.id, record);
    const timer = setTimeout(() => this.#expire(record.id), doc.timeoutMs);
    timer.unref();
    this.#timers.set(record.id, timer);
    return record;
  }

  /** The approvals still pending, oldest first. */
  pending(): ApprovalRecord[] {
    return [...this.#byId.values()].filter((r) => r.state === 'pending').sort((a, b) => a.requestedAt - b.requestedAt);
  }

  get(id: string): ApprovalRecord | undefined {
    return this.#byId.get(id);
  }

  /** A human's decision; NotFound for an unknown id, Conflict for one already decided or timed out. */
  decide(id: string, approve: boolean, by: string, reason: string | undefined): ApprovalRecord {
    const r = this.#byId.get(id);
    if (r === undefined) throw new AirlockError(ErrorCode.NotFound, `no approval ${id} is pending here`);
    if (r.state !== 'pending') throw new AirlockError(ErrorCode.Conflict, `approval ${id} is already ${r.state}`);
    r.state = approve ? 'approved' : 'denied';
    r.decidedBy = by;
    r.decidedAt = this.#now();
    if (reason !== undefined) r.reason = reason;
    this.#settle(r);
    return r;
  }

  /**
   * The held call's wait: resolves when the approval is decided or times out. Only its source, only
   * for the very call it holds (same binding), and only once; anything else is `unknown` at once.
   */
  wait(id: string, source: string, binding: string): Promise<ApprovalOutcome> {
    const r = this.#byId.get(id);
    if (r === undefined) return Promise.resolve({ state: 'unknown', why: `no approval ${id.slice(0, 64)} is held here (unknown, already used, or held by another control-plane replica)` });
    if (r.call.source !== source || r.binding !== binding) return Promise.resolve({ state: 'unknown', why: `approval ${id} is for another call` });
    if (this.#waiters.has(id)) return Promise.resolve({ state: 'unknown', why: `approval ${id} is already being waited for` });
    if (r.state !== 'pending') return Promise.resolve(this.#take(r));
    return new Promise<ApprovalOutcome>((resolve) => this.#waiters.set(id, { resolve }));
  }

  /** An inbound check of an approved call: true once per release of that exact call. */
  takeRelease(binding: string): boolean {
    const now = this.#now();
    const release = this.#released.get(binding);
    if (release === undefined) return false;
    if (release.until <= now || release.count <= 1) this.#released.delete(binding);
    else release.count--;
    return release.until > now;
  }

  /** The approved call was allowed at its source: its destination's sidecar may be let through once. */
  release(binding: string): void {
    const now = this.#now();
    for (const [b, r] of this.#released) if (r.until <= now) this.#released.delete(b);
    const release = this.#released.get(binding);
    if (release === undefined) this.#released.set(binding, { until: now + RELEASE_TTL_MS, count: 1 });
    else release.count++;
  }

  /** The outcome of a decided record, which is then gone: one approval, one call. */
  #take(r: ApprovalRecord): ApprovalOutcome {
    this.#byId.delete(r.id);
    clearTimeout(this.#timers.get(r.id));
    this.#timers.delete(r.id);
    if (r.state === 'approved') return { state: 'approved', record: r };
    return { state: r.state === 'pending' ? 'timeout' : r.state, record: r };
  }

  #settle(r: ApprovalRecord): void {
    const waiter = this.#waiters.get(r.id);
    if (waiter === undefined) {
      // Not waited for yet: kept until its expiry for the held call's wait to find.
      return;
    }
    this.#waiters.delete(r.id);
    waiter.resolve(this.#take(r));
  }

  #expire(id: string): void {
    const r = this.#byId.get(id);
    if (r === undefined) return;
    this.#timers.delete(id);
    if (r.state === 'pending') {
      r.state = 'timeout';
      r.decidedAt = this.#now();
      this.#onTimeout(r);
    }
    if (this.#waiters.has(id)) this.#settle(r);
    // Never waited for (the sidecar went away): dropped.
    else this.#byId.delete(id);
  }
}
