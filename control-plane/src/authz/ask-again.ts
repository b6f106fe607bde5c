import { TlsMode, Verdict, type AuthorizeResponse } from '@airlock/proto/authorization/v1';

/**
 * An answer that is not a decision: the sidecar is to ask again about the same call with more — the
 * MCP body it skipped (`mcpBodyRequired`), or the addresses the name resolves to (`addressesRequired`).
 * Nothing is audited or counted as a decision; a sidecar that does not know the field sees a DENY and
 * fails closed.
 */
export function askAgain(decisionId: string, policyVersion: number, reason: string, more: { readonly mcpBodyRequired?: true; readonly addressesRequired?: true }): AuthorizeResponse {
  return {
    verdict: Verdict.VERDICT_DENY,
    decisionId,
    reason,
    policy: '',
    upstream: undefined,
    dryRunDeny: false,
    policyVersion,
    rule: '',
    mcpAllowedTools: [],
    tls: TlsMode.TLS_MODE_UNSPECIFIED,
    ticket: '',
    approvalId: '',
    approvalWaitMs: 0,
    approvalOutcome: '',
    rateLimited: false,
    retryAfterMs: 0,
    addressesRequired: more.addressesRequired === true,
    mcpBodyRequired: more.mcpBodyRequired === true,
  };
}
