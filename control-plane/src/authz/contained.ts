import type { SpiffeId } from '@airlock/common/spiffe';

interface DecisionShape {
  readonly allow: boolean;
  readonly policy: string;
  readonly reason: string;
  readonly dryRunDeny: boolean;
}

/**
 * An identity contained (revoked, or quarantined by a responder), as source or destination, turns any
 * decision into a deny that no policy (nor dry-run) can lift, with `reason`. Kept apart from the
 * policy engine: containment is not a policy.
 */
export function denyIfContained<D extends DecisionShape>(
  decision: D,
  parties: { readonly source: SpiffeId; readonly destination: SpiffeId | undefined },
  contained: (spiffeId: string) => boolean,
  reason: string,
): D {
  const hit = contained(parties.source.uri) || (parties.destination !== undefined && contained(parties.destination.uri));
  return hit ? overruled(decision, reason) : decision;
}

/**
 * `decision` turned into a deny no policy (nor dry-run) lifted, with `reason`: what containment and
 * an MCP request whose headers contradict its body both give.
 */
export function overruled<D extends DecisionShape>(decision: D, reason: string): D {
  // A denial reaches no host: it names no way to reach one (tls).
  return { ...decision, allow: false, policy: '', reason, dryRunDeny: false, ...('rule' in decision ? { rule: '' } : {}), ...('tls' in decision ? { tls: undefined } : {}) };
}
