// Why a decision went the way it did, as a fixed set of classes: the control plane's
// airlock_authz_decisions_total{reason_class} and `airlock report`'s denials by class both read it
// from here, so a denial is classed the same in Prometheus and in the evidence an investigator hands on.

/** The stable reasons and reason prefixes a denial starts with, whatever policy it names. */
export const REVOKED_REASON = 'identity revoked';
export const QUARANTINED_REASON = 'quarantined';
export const THREAT_FEED_REASON = 'threat_feed';
export const SECRET_DETECTED_REASON = 'secret_detected';
export const SECRETS_UNSCANNABLE_REASON = 'secrets_unscannable';
export const ANOMALY_REASON = 'anomaly';
export const TOOL_CHANGED_REASON = 'tool_changed';
export const TOOL_FLAGGED_REASON = 'tool_flagged';
/** approval_denied, approval_timeout, approval_unknown, approval_limit, approval_required. */
export const APPROVAL_REASON_PREFIX = 'approval_';

/**
 * Allowed: `policy` (an allow policy), `dry_run` (a dry-run policy or RateLimit would have denied; let
 * through). Denied: `policy_deny` (a deny policy), `no_policy` (nothing allows it), `rate_limited`,
 * `contained` (revoked or quarantined), `header_mismatch` (MCP headers contradict the body),
 * `ambiguous_path`, `threat_feed`, `secret` (a secret or PII detector, or an unscannable tunnel),
 * `anomaly` (a Baseline), `tool_pin` (a changed or flagged MCP tool), `approval` (a held call denied,
 * timed out or over its bound), `other` (any cause added later and not classed here yet).
 */
export const REASON_CLASSES = ['policy', 'dry_run', 'policy_deny', 'no_policy', 'rate_limited', 'contained', 'header_mismatch', 'ambiguous_path', 'threat_feed', 'secret', 'anomaly', 'tool_pin', 'approval', 'other'] as const;
export type ReasonClass = (typeof REASON_CLASSES)[number];

/** Denials whose reason starts so, whatever policy the decision names. */
const PREFIXED: readonly (readonly [string, ReasonClass])[] = [
  [THREAT_FEED_REASON, 'threat_feed'],
  [SECRET_DETECTED_REASON, 'secret'],
  [SECRETS_UNSCANNABLE_REASON, 'secret'],
  [ANOMALY_REASON, 'anomaly'],
  [TOOL_CHANGED_REASON, 'tool_pin'],
  [TOOL_FLAGGED_REASON, 'tool_pin'],
  [APPROVAL_REASON_PREFIX, 'approval'],
];

export interface ClassifiedDecision {
  readonly allow: boolean;
  readonly dryRunDeny: boolean;
  readonly policy: string;
  readonly reason: string;
}

/** What the decision's record says beside its reason (two arguments: the control plane classes every decision, allocating nothing). */
export interface DecisionCircumstances {
  /** A RateLimit stopped the call. */
  readonly rateLimited: boolean;
  /** The MCP headers contradicted the body. */
  readonly headerMismatch: boolean;
}

export function reasonClassOf(d: ClassifiedDecision, o: DecisionCircumstances): ReasonClass {
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
