import { Direction as ProtoDirection, TlsMode, Verdict, type AuthorizeRequest, type AuthorizeResponse, type RequestHeader, type SecretFinding } from '@airlock/proto/authorization/v1';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import type { AuthzRequest, Decision } from './authorizer.ts';

/** Between the sidecar's own authorization types and the wire's, for every transport. */
export function toProtoRequest(request: AuthzRequest): AuthorizeRequest {
  const mcp = request.mcp;
  const call = mcp !== undefined && 'method' in mcp ? mcp : undefined;
  return {
    direction: request.direction === 'outbound' ? ProtoDirection.DIRECTION_OUTBOUND : ProtoDirection.DIRECTION_INBOUND,
    sourceSpiffeId: request.sourceId,
    destinationSpiffeId: request.destinationId ?? '',
    destinationHost: request.host,
    destinationPort: request.port,
    method: request.method,
    path: request.path,
    mcpMethod: call?.method ?? '',
    mcpTool: call?.tool ?? '',
    mcpUnreadable: mcp !== undefined && 'unreadable' in mcp ? mcp.unreadable : '',
    // The wire types want mutable arrays; encoding only reads them, so ours go as they are (no copies).
    mcpListedTools: (request.listedTools ?? []) as string[],
    mcpListedToolPins: (request.listedToolPins ?? []) as AuthorizeRequest['mcpListedToolPins'],
    headers: (request.headers?.entries ?? []) as RequestHeader[],
    headersIncomplete: request.headers?.incomplete ?? false,
    mcpArguments: call?.arguments !== undefined && 'json' in call.arguments ? call.arguments.json : '',
    mcpArgumentsUnreadable: call?.arguments !== undefined && 'unreadable' in call.arguments ? call.arguments.unreadable : '',
    mcpHeaderMismatch: request.mcpHeaderMismatch ?? '',
    inspected: request.inspected ?? false,
    approvalId: request.approvalId ?? '',
    secretFindings: (request.secretFindings ?? []) as SecretFinding[],
    destinationAddresses: (request.destinationAddresses ?? []) as string[],
    mcpBodySkipped: request.mcpBodySkipped ?? false,
  };
}

/** The decision in an answer, or undefined for an answer without a verdict we know (fail closed). */
export function toDecision(res: AuthorizeResponse): Decision | undefined {
  if (res.verdict === Verdict.VERDICT_ALLOW) {
    const upstream = res.upstream === undefined || res.upstream.address === '' ? undefined : { address: res.upstream.address, spiffeId: res.upstream.spiffeId };
    return {
      allowed: true,
      decisionId: res.decisionId,
      reason: res.reason,
      policy: res.policy,
      policyVersion: res.policyVersion,
      rule: res.rule,
      upstream,
      dryRunDeny: res.dryRunDeny,
      allowedTools: res.mcpAllowedTools,
      ...(res.tls === TlsMode.TLS_MODE_UNSPECIFIED ? {} : { tls: tlsMode(res.tls) }),
      ...(res.ticket === '' || upstream === undefined ? {} : { ticket: res.ticket }),
    };
  }
  if (res.verdict === Verdict.VERDICT_DENY) {
    // Not a decision: the skipped body must be read, and the call asked about again (mcp/lazy-body.ts).
    if (res.mcpBodyRequired) return { allowed: false, decisionId: res.decisionId, reason: res.reason, policy: res.policy, policyVersion: res.policyVersion, rule: res.rule, mcpBodyRequired: true };
    return { allowed: false, decisionId: res.decisionId, reason: res.reason, policy: res.policy, policyVersion: res.policyVersion, rule: res.rule, ...(res.approvalOutcome === '' ? {} : { approvalOutcome: res.approvalOutcome }), ...(res.rateLimited ? { retryAfterMs: Math.max(1, res.retryAfterMs) } : {}), ...(res.addressesRequired ? { addressesRequired: true as const } : {}) };
  }
  if (res.verdict === Verdict.VERDICT_APPROVAL_PENDING) {
    // Not allowed: only an answer to the wait (withApprovals) can let the call through.
    if (res.approvalId === '') return undefined;
    return { allowed: false, decisionId: res.decisionId, reason: res.reason, policy: res.policy, policyVersion: res.policyVersion, rule: res.rule, approval: { id: res.approvalId, waitMs: res.approvalWaitMs } };
  }
  return undefined;
}

/** A mode this sidecar does not know is not silently a blind tunnel or plain HTTP: the call is refused. */
function tlsMode(mode: TlsMode): 'inspect' | 'originate' | 'unknown' {
  return mode === TlsMode.TLS_MODE_INSPECT ? 'inspect' : mode === TlsMode.TLS_MODE_ORIGINATE ? 'originate' : 'unknown';
}

export function unavailable(reason: string, cause?: unknown): AirlockError {
  return new AirlockError(ErrorCode.AuthzUnavailable, reason, { cause });
}

/**
 * The check got no answer (unreachable, broken stream, deadline): the one failure worth asking
 * another replica. A control plane that answered (allow, deny, a refusal) is never asked again.
 */
export class NoAnswerError extends AirlockError {
  constructor(reason: string, cause?: unknown) {
    super(ErrorCode.AuthzUnavailable, reason, { cause });
  }
}

export function noAnswer(reason: string, cause?: unknown): NoAnswerError {
  return new NoAnswerError(reason, cause);
}
