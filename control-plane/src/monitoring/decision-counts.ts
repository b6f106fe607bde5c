import { QUARANTINED_REASON, REVOKED_REASON } from '../authz/contained.ts';
import type { ControlPlaneMetrics } from './metrics.ts';

/**
 * Why a decision went the way it did, as a fixed set (a metric label: never a raw reason, path or
 * identity). Allowed: `policy` (an allow policy), `dry_run` (a dry-run policy or RateLimit would have
 * denied; let through). Denied: `policy_deny` (a deny policy), `no_policy` (nothing allows it),
 * `rate_limited`, `contained` (revoked or quarantined), `header_mismatch` (MCP headers contradict the
 * body), `ambiguous_path`, `threat_feed`, `secret` (a secret or PII detector, or an unscannable
 * tunnel), `anomaly` (a Baseline), `tool_pin` (a changed or flagged MCP tool), `approval` (a held call
 * denied, timed out or over its bound), `other` (any cause added later and not classed here yet).
 */
export const REASON_CLASSES = ['policy', 'dry_run', 'policy_deny', 'no_policy', 'rate_limited', 'contained', 'header_mismatch', 'ambiguous_path', 'threat_feed', 'secret', 'anomaly', 'tool_pin', 'approval', 'other'] as const;

/** Denials whose reason starts so, whatever policy the decision names (their stable reason prefixes). */
const PREFIXED: readonly (readonly [string, ReasonClass])[] = [
  ['threat_feed', 'threat_feed'],
  ['secret_detected', 'secret'],
  ['secrets_unscannable', 'secret'],
  ['anomaly', 'anomaly'],
  ['tool_changed', 'tool_pin'],
  ['tool_flagged', 'tool_pin'],
  ['approval_', 'approval'],
];
export type ReasonClass = (typeof REASON_CLASSES)[number];

/** Distinct policy names used as a label at most; the others are counted as `(other)`. */
export const MAX_LABELLED_POLICIES = 100;
/** The label of a denial no policy made (the default deny, a rate limit, containment …): no policy can be named so. */
export const NO_POLICY_LABEL = '(none)';
const OTHER_POLICIES_LABEL = '(other)';

interface Decided {
  readonly allow: boolean;
  readonly dryRunDeny: boolean;
  readonly policy: string;
  readonly reason: string;
}

export function reasonClassOf(d: Decided, o: { readonly rateLimited: boolean; readonly headerMismatch: boolean }): ReasonClass {
  if (d.allow) return d.dryRunDeny ? 'dry_run' : 'policy';
  if (o.rateLimited) return 'rate_limited';
  if (o.headerMismatch) return 'header_mismatch';
  if (d.reason === REVOKED_REASON || d.reason === QUARANTINED_REASON) return 'contained';
  for (const [prefix, reasonClass] of PREFIXED) if (d.reason.startsWith(prefix)) return reasonClass;
  if (d.policy !== '') return 'policy_deny';
  if (d.reason.startsWith('no policy allows')) return 'no_policy';
  if (d.reason.startsWith('ambiguous path')) return 'ambiguous_path';
  return 'other';
}

type Direction = 'outbound' | 'inbound';

/**
 * Counts decisions (airlock_authz_decisions_total by direction, verdict and reason class) and
 * denials by policy (airlock_authz_policy_denials_total), with label children bound once: a labelled
 * inc hashes its label object on every call.
 */
export class DecisionCounts {
  readonly #metrics: ControlPlaneMetrics;
  readonly #decisions: Record<Direction, Record<ReasonClass, { inc(): void }>>;
  readonly #denials = new Map<string, { inc(): void }>();

  constructor(metrics: ControlPlaneMetrics) {
    this.#metrics = metrics;
    const bind = (direction: Direction): Record<ReasonClass, { inc(): void }> =>
      Object.fromEntries(REASON_CLASSES.map((c) => [c, metrics.decisions.labels(direction, c === 'policy' || c === 'dry_run' ? 'allow' : 'deny', c)])) as Record<ReasonClass, { inc(): void }>;
    this.#decisions = { outbound: bind('outbound'), inbound: bind('inbound') };
  }

  count(direction: Direction, d: Decided, o: { readonly rateLimited: boolean; readonly headerMismatch: boolean }): void {
    this.#decisions[direction][reasonClassOf(d, o)].inc();
    if (d.allow) return;
    const name = d.policy === '' ? NO_POLICY_LABEL : d.policy;
    let child = this.#denials.get(name);
    if (child === undefined) {
      const label = this.#denials.size < MAX_LABELLED_POLICIES ? name : OTHER_POLICIES_LABEL;
      child = this.#metrics.policyDenials.labels(label);
      if (label === name) this.#denials.set(name, child);
    }
    child.inc();
  }
}
