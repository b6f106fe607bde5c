// The evidence an investigator hands on, from audit events (docs/audit-schema.md): the time window,
// which events name an identity (`airlock export`), and the summary `airlock report` prints.
import { duration } from '@airlock/common/config';
import { errorMessage } from '@airlock/common/errors';
import { reasonClassOf, REVOKED_REASON } from '@airlock/common/reason-class';
import { UsageError } from '../args.ts';

/** An audit event as read from a log line (its fields are checked where they are used). */
export type AuditEventJson = Readonly<Record<string, unknown>>;

/** [since, until): epoch ms; until absent: no end. */
export interface TimeWindow {
  readonly since: number;
  readonly until?: number;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

/** `text` as epoch ms: an RFC 3339 time with its offset (2026-12-04T10:00:00Z), or a duration before `now` (24h, 30m). */
export function parseTime(flag: string, text: string, now: number): number {
  const t = text.trim();
  if (RFC3339.test(t)) {
    const ms = Date.parse(t);
    if (Number.isFinite(ms)) return ms;
  } else if (/^\d/.test(t) && !t.includes('-') && !t.includes(':')) {
    try {
      return now - duration({ description: flag, minMs: 0, maxMs: Number.MAX_SAFE_INTEGER }).parse(t);
    } catch (err) {
      throw new UsageError(`--${flag}: ${errorMessage(err)}`);
    }
  }
  throw new UsageError(`--${flag}: expected an RFC 3339 time with its offset (2026-12-04T10:00:00Z) or a duration before now (24h, 30m), got "${t.slice(0, 60)}"`);
}

export function parseWindow(since: unknown, until: unknown, now = Date.now()): TimeWindow {
  if (typeof since !== 'string') throw new UsageError('--since T is required: an RFC 3339 time or a duration before now (24h)');
  const w = { since: parseTime('since', since, now), ...(typeof until === 'string' ? { until: parseTime('until', until, now) } : {}) };
  if (w.until !== undefined && w.until <= w.since) throw new UsageError(`--until (${new Date(w.until).toISOString()}) must be after --since (${new Date(w.since).toISOString()})`);
  return w;
}

/** Whether the event's `time` falls in the window (an event without a readable time never does). */
export function inWindow(e: AuditEventJson, w: TimeWindow): boolean {
  const t = typeof e.time === 'string' ? Date.parse(e.time) : NaN;
  return t >= w.since && (w.until === undefined || t < w.until);
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const obj = (v: unknown): Readonly<Record<string, unknown>> | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);

/**
 * Whether the event names `identity` (a SPIFFE ID): a decision as its source or destination; a
 * refusal as its caller or in the request refused; an admin action as its actor or target, or in
 * its detail as the source or destination of the call it decided (approvals), or among the
 * identities a segment or label quarantine (or its release) contained (`detail.matchedIds`).
 */
export function namesIdentity(e: AuditEventJson, identity: string): boolean {
  switch (e.kind) {
    case 'decision':
      return e.source === identity || e.destination === identity;
    case 'refusal': {
      const r = obj(e.request);
      return e.caller === identity || (r !== undefined && (r.source === identity || r.destination === identity));
    }
    case 'admin': {
      const d = obj(e.detail);
      return e.actor === identity || e.target === identity || (d !== undefined && (d.source === identity || d.destination === identity || (Array.isArray(d.matchedIds) && d.matchedIds.includes(identity))));
    }
    default:
      // Any other kind (a later one: an anomaly …) that names the identity in its usual fields.
      return e.kind !== 'chain-start' && e.kind !== 'checkpoint' && [e.source, e.destination, e.identity, e.target].includes(identity);
  }
}

/**
 * Why a call was denied: the class airlock_authz_decisions_total counts it under (`reason_class`),
 * with `contained` told apart as `quarantined` or `revoked`.
 */
export function denialClass(e: AuditEventJson): string {
  const reason = str(e.reason) ?? '';
  const rateLimit = obj(e.rateLimit);
  const rateLimited = rateLimit !== undefined && rateLimit.mode !== 'dry-run';
  const headerMismatch = obj(e.mcp)?.headerMismatch !== undefined;
  const c = reasonClassOf({ allow: false, dryRunDeny: false, policy: str(e.policy) ?? '', reason }, { rateLimited, headerMismatch });
  if (c !== 'contained') return c;
  return reason === REVOKED_REASON ? 'revoked' : 'quarantined';
}

type Counts = Record<string, number>;
const bump = (c: Counts, k: string, by = 1): void => void (c[k] = (c[k] ?? 0) + by);

/** The evidence summary `airlock report` prints (docs/compliance.md says which control each serves). */
export interface EvidenceReport {
  readonly window: { readonly since: string; readonly until?: string };
  readonly events: number;
  readonly byKind: Counts;
  readonly decisions: {
    readonly total: number;
    /** `outbound.allow`, `inbound.deny`, `outbound.pending` … */
    readonly byDirection: Counts;
    /** Let through by a dry-run policy that would have denied them. */
    readonly dryRunWouldDeny: number;
    readonly denialsByClass: Counts;
    /** The policies that denied most (a deny rule, an argument rule …; the default deny is `(no policy)`), at most 10. */
    readonly topDenyingPolicies: readonly { readonly policy: string; readonly denials: number }[];
    readonly rateLimited: number;
    /** Decisions of calls to MCP tools whose pins changed or were flagged. */
    readonly toolPinFindings: number;
  };
  readonly refusals: { readonly total: number; readonly byReasonCode: Counts };
  readonly quarantines: { readonly quarantined: number; readonly released: number; readonly revoked: number };
  readonly approvals: { readonly held: number; readonly approved: number; readonly denied: number; readonly timedOut: number };
  /** Events of a kind `anomaly`, when a control plane writes them. */
  readonly anomalies: number;
  readonly certificates: { readonly caChanges: Counts; readonly signRefusals: number };
  readonly admin: {
    readonly total: number;
    readonly byAction: Counts;
    /** Policy versions made (apply, delete, rollback), and those in force from another replica. */
    readonly policyVersions: readonly number[];
    readonly tokensCreated: number;
    readonly tokensRevoked: number;
  };
}

/** Adds events up into an EvidenceReport. */
export class ReportBuilder {
  readonly #w: TimeWindow;
  #events = 0;
  readonly #byKind: Counts = {};
  #decisions = 0;
  readonly #byDirection: Counts = {};
  #dryRun = 0;
  readonly #denials: Counts = {};
  readonly #denyingPolicies: Counts = {};
  #rateLimited = 0;
  #toolPins = 0;
  #refusals = 0;
  readonly #refusalCodes: Counts = {};
  readonly #containment = { quarantined: 0, released: 0, revoked: 0 };
  readonly #approvals = { held: 0, approved: 0, denied: 0, timedOut: 0 };
  #anomalies = 0;
  readonly #ca: Counts = {};
  #signRefusals = 0;
  #admin = 0;
  readonly #actions: Counts = {};
  readonly #versions = new Set<number>();
  #tokensCreated = 0;
  #tokensRevoked = 0;

  constructor(w: TimeWindow) {
    this.#w = w;
  }

  /** Counts `e` when it is in the window. */
  add(e: AuditEventJson): void {
    if (!inWindow(e, this.#w)) return;
    const kind = str(e.kind) ?? '';
    this.#events++;
    bump(this.#byKind, kind);
    if (kind === 'decision') this.#decision(e);
    else if (kind === 'refusal') {
      this.#refusals++;
      bump(this.#refusalCodes, str(e.reasonCode) ?? '');
      if (e.operation === 'SignCertificate') this.#signRefusals++;
    } else if (kind === 'admin') this.#adminAction(e);
    else if (kind === 'anomaly') this.#anomalies++;
  }

  #decision(e: AuditEventJson): void {
    this.#decisions++;
    const verdict = str(e.verdict) ?? '';
    bump(this.#byDirection, `${str(e.direction) ?? ''}.${verdict}`);
    if (e.mode === 'dry-run') this.#dryRun++;
    const rateLimit = obj(e.rateLimit);
    if (rateLimit !== undefined && rateLimit.mode !== 'dry-run') this.#rateLimited++;
    const pins = obj(e.mcp)?.toolPins;
    if (Array.isArray(pins) && pins.length > 0) this.#toolPins++;
    const approval = obj(e.approval);
    if (approval?.state === 'pending') this.#approvals.held++;
    if (verdict === 'deny') {
      bump(this.#denials, denialClass(e));
      bump(this.#denyingPolicies, str(e.policy) || '(no policy)');
    }
  }

  #adminAction(e: AuditEventJson): void {
    this.#admin++;
    const action = str(e.action) ?? '';
    bump(this.#actions, action);
    if (action === 'agent.quarantine') this.#containment.quarantined++;
    else if (action === 'agent.release' && obj(e.detail)?.wasQuarantined !== false) this.#containment.released++;
    else if (action === 'agent.revoke') this.#containment.revoked++;
    else if (action === 'approval.approve') this.#approvals.approved++;
    else if (action === 'approval.deny') this.#approvals.denied++;
    else if (action === 'approval.timeout') this.#approvals.timedOut++;
    else if (action.startsWith('ca.')) bump(this.#ca, action);
    else if (action.startsWith('policy.')) {
      const v = /^version (\d+)$/.exec(str(e.target) ?? '');
      if (v !== null) this.#versions.add(Number(v[1]));
    }
    if (/^(join-token|api-token|admin-cert)\.create$/.test(action)) this.#tokensCreated++;
    if (/^(join-token|api-token|admin-cert)\.revoke$|^admin-token\.retire$/.test(action)) this.#tokensRevoked++;
  }

  finish(): EvidenceReport {
    const top = Object.entries(this.#denyingPolicies).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, 10);
    return {
      window: { since: new Date(this.#w.since).toISOString(), ...(this.#w.until === undefined ? {} : { until: new Date(this.#w.until).toISOString() }) },
      events: this.#events,
      byKind: this.#byKind,
      decisions: {
        total: this.#decisions,
        byDirection: this.#byDirection,
        dryRunWouldDeny: this.#dryRun,
        denialsByClass: this.#denials,
        topDenyingPolicies: top.map(([policy, denials]) => ({ policy, denials })),
        rateLimited: this.#rateLimited,
        toolPinFindings: this.#toolPins,
      },
      refusals: { total: this.#refusals, byReasonCode: this.#refusalCodes },
      quarantines: { ...this.#containment },
      approvals: { ...this.#approvals },
      anomalies: this.#anomalies,
      certificates: { caChanges: this.#ca, signRefusals: this.#signRefusals },
      admin: { total: this.#admin, byAction: this.#actions, policyVersions: [...this.#versions].sort((a, b) => a - b), tokensCreated: this.#tokensCreated, tokensRevoked: this.#tokensRevoked },
    };
  }
}
