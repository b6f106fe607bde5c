import { APPROVAL_REASON_PREFIX } from '@airlock/common/reason-class';
import { AirlockError } from '@airlock/common/errors';
import { parseArgumentsJson } from '@airlock/common/mcp-arguments';
import type { SpiffeId } from '@airlock/common/spiffe';
import type { AuthorizeRequest } from '@airlock/proto/authorization/v1';
import type { AuditApproval } from '../../audit/event.ts';
import type { Destination, PolicyDecision } from '../../policy/engine.ts';
import { overruled } from '../contained.ts';
import { bindingOf, type ApprovalCall, type ApprovalOutcome, type ApprovalRecord, type Approvals } from './approvals.ts';

/** The stable start of a denial for want of an approval (common/src/reason-class.ts classes it `approval`). */
const APPROVAL_REQUIRED = `${APPROVAL_REASON_PREFIX}required`;

/** What a decision under `approve: required` came to. */
export interface HeldDecision {
  readonly decision: PolicyDecision;
  /** Set when the call is now held: the sidecar waits for this approval. */
  readonly pending?: ApprovalRecord;
  /** For the audit line. */
  readonly approval?: AuditApproval;
  /** For the sidecar's denial: approval_denied, approval_timeout, approval_unknown (else ''). */
  readonly outcome: string;
  /** Refused for a bound (counted by the caller). */
  readonly overLimit?: boolean;
}

/** Denied, still naming the policy and rule that asked for the approval (the agent reads which). */
function kept(decision: PolicyDecision, reason: string): PolicyDecision {
  return { ...overruled(decision, reason), policy: decision.policy, rule: decision.rule };
}

/** The exact call of a tools/call request, or why it cannot be bound (its arguments unreadable). */
export function approvalCallOf(req: AuthorizeRequest, source: SpiffeId, destination: Destination): ApprovalCall | string {
  if (req.mcpMethod !== 'tools/call') return 'only an MCP tools/call can be approved';
  if (req.mcpArgumentsUnreadable !== '') return `its arguments cannot be read (${req.mcpArgumentsUnreadable})`;
  const args = parseArgumentsJson(req.mcpArguments === '' ? '{}' : req.mcpArguments);
  if ('unreadable' in args) return `its arguments cannot be read (${args.unreadable})`;
  return {
    source: source.uri,
    destination: destination.kind === 'agent' ? destination.id.uri : destination.host,
    // The port an agent is reached on differs between hops (mesh host, inbound listener): its identity names it.
    port: destination.kind === 'agent' ? 0 : req.destinationPort,
    method: req.method,
    path: req.path,
    mcpMethod: req.mcpMethod,
    tool: req.mcpTool,
    arguments: args.value,
  };
}

/**
 * Applies human approval to a decision (README "Human approval"): an allow under `approve: required`
 * is held (OUTBOUND) until the held call's wait brings an approval of that exact call; the inbound
 * check of an approved call passes once on its release. Every other case is a deny: a denial, a
 * timeout, an unknown or reused approval, unreadable arguments, a bound reached, no approvals here.
 */
export function applyApproval(
  decision: PolicyDecision,
  c: {
    readonly approvals: Approvals | undefined;
    readonly direction: 'outbound' | 'inbound';
    readonly req: AuthorizeRequest;
    readonly source: SpiffeId;
    readonly destination: Destination;
    readonly decisionId: string;
    /** The outcome of the held call's wait (only with req.approvalId). */
    readonly held: ApprovalOutcome | undefined;
  },
): HeldDecision {
  const req = c.req;
  if (req.approvalId !== '') {
    const held: ApprovalOutcome = c.held ?? { state: 'unknown', why: 'the approval was not waited for' };
    if (held.state === 'unknown') return { decision: overruled(decision, `approval_unknown: ${held.why}`), approval: { id: req.approvalId.slice(0, 64), state: 'unknown' }, outcome: 'approval_unknown' };
    const r = held.record;
    const note = { id: r.id, state: held.state, binding: r.binding, ...(r.decidedBy === undefined ? {} : { by: r.decidedBy }), ...(r.reason === undefined ? {} : { reason: r.reason }) } satisfies AuditApproval;
    if (held.state === 'denied') return { decision: kept(decision, `approval_denied: ${r.decidedBy ?? 'a responder'} denied this call${r.reason === undefined ? '' : ` (${r.reason})`}`), approval: note, outcome: 'approval_denied' };
    if (held.state === 'timeout') return { decision: kept(decision, `approval_timeout: no one approved this call within ${Math.round((r.expiresAt - r.requestedAt) / 1000)}s`), approval: note, outcome: 'approval_timeout' };
    // Approved: the call is decided again now (a policy may have changed since); the approval only lifts the hold.
    if (decision.allow && c.destination.kind === 'agent') c.approvals?.release(r.binding);
    return { decision, approval: note, outcome: '' };
  }
  if (!decision.allow || decision.approval === undefined) return { decision, outcome: '' };
  const call = approvalCallOf(req, c.source, c.destination);
  if (typeof call === 'string') return { decision: overruled(decision, `${APPROVAL_REQUIRED}: this call needs a human approval, and ${call}`), outcome: '' };
  if (c.approvals === undefined) return { decision: overruled(decision, `${APPROVAL_REQUIRED}: this call needs a human approval, and this control plane holds no approvals`), outcome: '' };
  if (c.direction === 'inbound') {
    // The destination's sidecar asks about a call its source's sidecar held: it passes once, if approved.
    const binding = bindingOf(call);
    if (c.approvals.takeRelease(binding)) return { decision, approval: { id: '', state: 'released', binding }, outcome: '' };
    return { decision: overruled(decision, `${APPROVAL_REQUIRED}: this call needs a human approval, and none was given for this exact call at its source`), outcome: '' };
  }
  try {
    const pending = c.approvals.request(call, decision.approval, { decisionId: c.decisionId, policy: decision.policy, rule: decision.rule });
    return { decision, pending, approval: { id: pending.id, state: 'pending', binding: pending.binding }, outcome: '' };
  } catch (err) {
    if (!(err instanceof AirlockError)) throw err;
    return { decision: overruled(decision, `approval_limit: ${err.message}`), outcome: '', overLimit: true };
  }
}
