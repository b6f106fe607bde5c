import { REASON_CLASSES, reasonClassOf, type ClassifiedDecision, type DecisionCircumstances, type ReasonClass } from '@airlock/common/reason-class';
import type { ControlPlaneMetrics } from './metrics.ts';

/** Distinct policy names used as a label at most; the others are counted as `(other)`. */
export const MAX_LABELLED_POLICIES = 100;
/** The label of a denial no policy made (the default deny, a rate limit, containment …): no policy can be named so. */
export const NO_POLICY_LABEL = '(none)';
const OTHER_POLICIES_LABEL = '(other)';

type Direction = 'outbound' | 'inbound';

/**
 * Counts decisions (airlock_authz_decisions_total by direction, verdict and reason class) and
 * denials by policy (airlock_authz_policy_denials_total), with label children bound once: a labelled
 * inc hashes its label object on every call.
 */
export class DecisionCounts {
  readonly #metrics: ControlPlaneMetrics;
  readonly #decisions: Record<Direction, Record<ReasonClass, { inc(): void }>>;
  readonly #pending: Record<Direction, { inc(): void }>;
  readonly #denials = new Map<string, { inc(): void }>();

  constructor(metrics: ControlPlaneMetrics) {
    this.#metrics = metrics;
    const bind = (direction: Direction): Record<ReasonClass, { inc(): void }> =>
      Object.fromEntries(REASON_CLASSES.map((c) => [c, metrics.decisions.labels(direction, c === 'policy' || c === 'dry_run' ? 'allow' : 'deny', c)])) as Record<ReasonClass, { inc(): void }>;
    this.#decisions = { outbound: bind('outbound'), inbound: bind('inbound') };
    this.#pending = { outbound: metrics.decisions.labels('outbound', 'pending', 'policy'), inbound: metrics.decisions.labels('inbound', 'pending', 'policy') };
  }

  /** A call held for a human approval: verdict `pending` (its outcome is counted when decided). */
  countPending(direction: Direction): void {
    this.#pending[direction].inc();
  }

  count(direction: Direction, d: ClassifiedDecision, o: DecisionCircumstances): void {
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
