import type { SpiffeId } from '@airlock/common/spiffe';

export const REVOKED_REASON = 'identity revoked';

interface DecisionShape {
  readonly allow: boolean;
  readonly policy: string;
  readonly reason: string;
  readonly dryRunDeny: boolean;
}

/**
 * A revoked identity, as source or destination, turns any decision into a deny that no policy
 * (nor dry-run) can lift. Kept apart from the policy engine: revocation is not a policy.
 */
export function denyIfRevoked<D extends DecisionShape>(
  decision: D,
  parties: { readonly source: SpiffeId; readonly destination: SpiffeId | undefined },
  isRevoked: ((spiffeId: string) => boolean) | undefined,
): D {
  if (isRevoked === undefined) return decision;
  const revoked = isRevoked(parties.source.uri) || (parties.destination !== undefined && isRevoked(parties.destination.uri));
  if (!revoked) return decision;
  return { ...decision, allow: false, policy: '', reason: REVOKED_REASON, dryRunDeny: false, ...('rule' in decision ? { rule: '' } : {}) };
}
