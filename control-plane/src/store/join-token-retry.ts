import type { JoinTokenClaim } from './store.ts';

/**
 * Whether a spent join token may answer again: the same claimant (its CSR key and inbound address,
 * hashed) whose answer was lost, asking within the retry window of the first use. Both backends
 * decide it here, so they cannot disagree.
 */
export function isRetry(usedAt: number, usedBy: string | undefined, now: number, claim: JoinTokenClaim): boolean {
  return usedBy !== undefined && usedBy !== '' && usedBy === claim.claimant && now - usedAt <= claim.retryWithinMs;
}
