import type { IncomingMessage, ServerResponse } from 'node:http';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { sendJson, type AdminRoute } from '@airlock/common/telemetry';
import type { Revocations } from '../../ca/revocations.ts';
import type { ControlPlaneMetrics } from '../../monitoring/metrics.ts';
import type { RequireRole } from './admin-auth.ts';
import { objectBody, readJson } from './admin-body.ts';
import { HttpError, sendError } from './http-errors.ts';

export interface RevokeRouteDeps {
  /** Revocation is an incident action: role responder (or admin). */
  readonly requireRole: RequireRole;
  readonly trustDomain: string;
  readonly revocations: Revocations;
  readonly metrics: ControlPlaneMetrics;
  /** The audit logger: a revocation is a security event. */
  readonly audit: Logger;
}

/**
 * `POST /v1/agents/revoke` {identity} → 200 {identity, revokedAt, alreadyRevoked, revokedSerials}.
 * From then on: its renewals are refused, every Authorize naming it is denied, and sidecars are
 * pushed its serials so they refuse its handshakes.
 */
export function revokeRoute(deps: RevokeRouteDeps): AdminRoute {
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/v1/agents/revoke') return false;
    try {
      if (req.method !== 'POST') {
        res.setHeader('allow', 'POST');
        throw new HttpError(405, 'method_not_allowed', 'use POST');
      }
      const who = await deps.requireRole(req, 'responder');
      const body = await readJson(req);
      const { identity } = objectBody(body, ['identity']);
      if (typeof identity !== 'string') throw new AirlockError(ErrorCode.BadRequest, '"identity" must be a SPIFFE ID string');
      const id = parseSpiffeId(identity);
      if (id.trustDomain !== deps.trustDomain) throw new AirlockError(ErrorCode.BadRequest, `${identity} is not in this control plane's trust domain ${deps.trustDomain}`);
      const result = await deps.revocations.revoke(id.uri);
      if (result.newlyRevoked) deps.metrics.revocations.inc();
      deps.audit.warn({ audit: true, action: 'revoke', actor: who.name, role: who.role, identity: id.uri, serials: result.serials, alreadyRevoked: !result.newlyRevoked }, 'identity revoked');
      sendJson(res, 200, { identity: id.uri, revokedAt: new Date(result.revokedAt).toISOString(), alreadyRevoked: !result.newlyRevoked, revokedSerials: result.serials });
    } catch (err) {
      sendError(res, err);
    }
    return true;
  };
}
