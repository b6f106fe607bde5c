import { AuthorizeResponse, Verdict } from '@airlock/proto/authorization/v1';

/**
 * An answer that is not a decision: the sidecar is to ask again about the same call with more — the
 * MCP body it skipped (`mcpBodyRequired`), or the addresses the name resolves to (`addressesRequired`).
 * Nothing is audited or counted as a decision; a sidecar that does not know the field sees a DENY and
 * fails closed. (The generated fromPartial fills every other field, so a new field needs nothing here.)
 */
export function askAgain(decisionId: string, policyVersion: number, reason: string, more: { readonly mcpBodyRequired?: true; readonly addressesRequired?: true }): AuthorizeResponse {
  return AuthorizeResponse.fromPartial({ verdict: Verdict.VERDICT_DENY, decisionId, reason, policyVersion, ...more });
}
