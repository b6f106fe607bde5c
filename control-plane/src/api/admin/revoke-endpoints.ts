import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { parseSpiffeId } from '@airlock/common/spiffe';
import type { AuditLog } from '../../audit/event.ts';
import type { Revocations } from '../../ca/revocations.ts';
import type { ControlPlaneMetrics } from '../../monitoring/metrics.ts';
import { ok, type AdminEndpoint } from './endpoints.ts';

export interface RevokeEndpointDeps {
  readonly trustDomain: string;
  readonly revocations: Revocations;
  readonly metrics: ControlPlaneMetrics;
  /** The audit trail: a revocation is a security event. */
  readonly audit: AuditLog;
}

/**
 * `POST /v1/agents/revoke` {identity} (responder: an incident action) → {identity, revokedAt,
 * alreadyRevoked, revokedSerials}. From then on its renewals are refused, every Authorize naming it is
 * denied, and sidecars are pushed its serials so they refuse its handshakes.
 */
export function revokeEndpoints(deps: RevokeEndpointDeps): AdminEndpoint[] {
  return [
    {
      method: 'POST',
      path: /^\/v1\/agents\/revoke$/,
      role: 'responder',
      handle: async ({ who, body }) => {
        const { identity } = await body(['identity']);
        if (typeof identity !== 'string') throw new AirlockError(ErrorCode.BadRequest, '"identity" must be a SPIFFE ID string');
        const id = parseSpiffeId(identity);
        if (id.trustDomain !== deps.trustDomain) throw new AirlockError(ErrorCode.BadRequest, `${identity} is not in this control plane's trust domain ${deps.trustDomain}`);
        const result = await deps.revocations.revoke(id.uri);
        if (result.newlyRevoked) deps.metrics.revocations.inc();
        deps.audit.admin({ actor: who.name, role: who.role, action: 'agent.revoke', target: id.uri, detail: { serials: result.serials, alreadyRevoked: !result.newlyRevoked } });
        return ok({ identity: id.uri, revokedAt: new Date(result.revokedAt).toISOString(), alreadyRevoked: !result.newlyRevoked, revokedSerials: result.serials });
      },
    },
  ];
}
