import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '@airlock/common/logging';
import { sendJson, type AdminRoute } from '@airlock/common/telemetry';
import type { CaRing } from '../../ca/ca-ring.ts';
import type { Store } from '../../store/store.ts';
import type { RequireRole } from './admin-auth.ts';
import { objectBody, optionalBoolean, optionalString, readJson } from './admin-body.ts';
import { HttpError, sendError } from './http-errors.ts';

export interface CaRouteDeps {
  readonly store: Store;
  readonly ring: CaRing;
  readonly requireRole: RequireRole;
  readonly audit: Logger;
}

const STEPS = ['prepare', 'activate', 'retire'] as const;
type Step = (typeof STEPS)[number];

/**
 * The root rollover: `GET /v1/ca` (viewer) → {mode, issuer, renewNow, roots}; `POST /v1/ca/prepare`
 * {}, `/v1/ca/activate` {renewNow?}, `/v1/ca/retire` {id?, force?} (admin) → {roots, status}.
 */
export function caRoutes(deps: CaRouteDeps): AdminRoute {
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? '/').split('?')[0] ?? '';
    if (path !== '/v1/ca' && !path.startsWith('/v1/ca/')) return false;
    try {
      if (path === '/v1/ca') {
        if (req.method !== 'GET') {
          res.setHeader('allow', 'GET');
          throw new HttpError(405, 'method_not_allowed', 'use GET');
        }
        await deps.requireRole(req, 'viewer');
        sendJson(res, 200, await deps.ring.status());
        return true;
      }
      const step = path.slice('/v1/ca/'.length) as Step;
      if (!STEPS.includes(step)) throw new HttpError(404, 'not_found', `no such CA operation (known: ${STEPS.join(', ')})`);
      if (req.method !== 'POST') {
        res.setHeader('allow', 'POST');
        throw new HttpError(405, 'method_not_allowed', 'use POST');
      }
      const who = await deps.requireRole(req, 'admin');
      // No body at all is the same as {} (a bare `curl -X POST`).
      const raw = req.headers['content-length'] === '0' ? {} : await readJson(req);
      let roots;
      let detail: Record<string, unknown> = {};
      if (step === 'prepare') {
        objectBody(raw, []);
        roots = [await deps.ring.prepare()];
      } else if (step === 'activate') {
        const renewNow = optionalBoolean(objectBody(raw, ['renewNow']), 'renewNow');
        detail = { renewNow };
        roots = [await deps.ring.activate({ renewNow })];
      } else {
        const body = objectBody(raw, ['id', 'force']);
        const id = optionalString(body, 'id');
        const force = optionalBoolean(body, 'force');
        detail = { id, force };
        roots = await deps.ring.retire({ ...(id === undefined ? {} : { id }), force });
      }
      const ids = roots.map((r) => r.id);
      deps.audit.warn({ audit: true, action: `ca.${step}`, actor: who.name, roots: ids, ...detail }, `CA ${step}`);
      await deps.store.addAuditEvent({ at: Date.now(), actor: who.name, action: `ca.${step}`, target: ids.join(','), detail: JSON.stringify(detail) });
      sendJson(res, 200, { roots, status: await deps.ring.status() });
    } catch (err) {
      sendError(res, err);
    }
    return true;
  };
}
