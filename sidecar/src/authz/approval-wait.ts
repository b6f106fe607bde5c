import type { Authorizer, AuthzRequest, Decision } from './authorizer.ts';

/** The longest a rule may hold a call (the control plane's bound too): a larger wait is not believed. */
const MAX_APPROVAL_WAIT_MS = 10 * 60_000;

/**
 * Holds a call the control plane answered "pending a human approval": asks again with the
 * approval's id, on a deadline of the approval's wait plus the decision timeout (the control plane
 * answers a timeout itself when the wait ends). The answer to that ask is the call's decision:
 * allow (approved, decided again), deny (denied, timed out, unknown) or no answer (fail closed).
 * A pending answer to the second ask is a deny: a call is held once.
 */
export function withApprovals(inner: Authorizer, authzTimeoutMs: number): Authorizer {
  return {
    async authorize(request: AuthzRequest, timeoutMs?: number): Promise<Decision> {
      const first = await inner.authorize(request, timeoutMs);
      if (first.allowed || first.approval === undefined || request.approvalId !== undefined) return stripped(first);
      const waitMs = Math.min(first.approval.waitMs, MAX_APPROVAL_WAIT_MS) + authzTimeoutMs;
      const endpoint = first.approval.endpoint;
      return stripped(await inner.authorize({ ...request, approvalId: first.approval.id, ...(endpoint === undefined ? {} : { approvalEndpoint: endpoint }) }, waitMs));
    },
    close: () => inner.close(),
  };
}

/** A decision as the proxies see it: a pending one left over is a plain deny. */
function stripped(d: Decision): Decision {
  if (d.allowed || d.approval === undefined) return d;
  return { allowed: false, decisionId: d.decisionId, reason: d.reason, policy: d.policy, policyVersion: d.policyVersion, rule: d.rule, ...(d.approvalOutcome === undefined ? {} : { approvalOutcome: d.approvalOutcome }) };
}
