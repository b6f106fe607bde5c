import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { recordAdminAction } from '../../audit/admin-action.ts';
import type { AuditLog } from '../../audit/event.ts';
import type { ApprovalRecord, Approvals } from '../../authz/approvals/approvals.ts';
import type { Store } from '../../store/store.ts';
import { requireGrant } from './admin-auth.ts';
import { optionalString } from './admin-body.ts';
import { ok, type AdminEndpoint } from './endpoints.ts';

export interface ApprovalEndpointDeps {
  readonly approvals: Approvals;
  readonly store: Store;
  readonly audit: AuditLog;
}

/** The arguments an approver reads, bounded (the call itself is bound by its hash, not by this text). */
const MAX_SHOWN_ARGUMENTS = 4096;

/**
 * Human approval of held calls (role responder; a rule may ask for admin): `GET /v1/approvals` →
 * {items} (pending, with the exact call: the approver must see what is approved, arguments
 * included), `POST /v1/approvals/approve` {id}, `POST /v1/approvals/deny` {id, reason?}. Each
 * decision is recorded (store history and audit trail) with who made it.
 */
export function approvalEndpoints(deps: ApprovalEndpointDeps): AdminEndpoint[] {
  const view = (r: ApprovalRecord) => {
    const args = JSON.stringify(r.call.arguments);
    return {
      id: r.id,
      state: r.state,
      source: r.call.source,
      destination: r.call.destination,
      method: r.call.method,
      path: r.call.path,
      tool: r.call.tool,
      arguments: args.length > MAX_SHOWN_ARGUMENTS ? `${args.slice(0, MAX_SHOWN_ARGUMENTS)}…` : args,
      binding: r.binding,
      policy: r.policy,
      rule: r.rule,
      approver: r.role,
      decisionId: r.decisionId,
      requestedAt: new Date(r.requestedAt).toISOString(),
      expiresAt: new Date(r.expiresAt).toISOString(),
      ...(r.decidedBy === undefined ? {} : { decidedBy: r.decidedBy }),
      ...(r.reason === undefined ? {} : { reason: r.reason }),
    };
  };
  const decide = (approve: boolean): AdminEndpoint['handle'] => async ({ who, body }) => {
    const fields = await body(approve ? ['id'] : ['id', 'reason']);
    const id = optionalString(fields, 'id');
    if (id === undefined || id === '') throw new AirlockError(ErrorCode.BadRequest, '"id" is required (see GET /v1/approvals)');
    const reason = optionalString(fields, 'reason')?.trim();
    if (reason !== undefined && reason.length > 500) throw new AirlockError(ErrorCode.BadRequest, '"reason" is at most 500 characters');
    const held = deps.approvals.get(id);
    if (held === undefined) throw new AirlockError(ErrorCode.NotFound, `no approval ${id.slice(0, 64)} is pending here (unknown, decided, expired, or held by another control-plane replica)`);
    // The rule names who may decide (responder by default, or admin).
    requireGrant(who, held.role);
    const r = deps.approvals.decide(id, approve, who.name, reason === '' ? undefined : reason);
    await recordAdminAction(deps, {
      actor: who.name,
      role: who.role,
      action: approve ? 'approval.approve' : 'approval.deny',
      target: r.id,
      detail: { source: r.call.source, destination: r.call.destination, tool: r.call.tool, binding: r.binding, decisionId: r.decisionId, ...(r.reason === undefined ? {} : { reason: r.reason }) },
    });
    return ok(view(r));
  };
  return [
    { method: 'GET', path: /^\/v1\/approvals$/, role: 'responder', handle: () => Promise.resolve(ok({ items: deps.approvals.pending().map(view) })) },
    { method: 'POST', path: /^\/v1\/approvals\/approve$/, role: 'responder', handle: decide(true) },
    { method: 'POST', path: /^\/v1\/approvals\/deny$/, role: 'responder', handle: decide(false) },
  ];
}
