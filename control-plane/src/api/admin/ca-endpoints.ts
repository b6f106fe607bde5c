import { recordAdminAction } from '../../audit/admin-action.ts';
import type { AuditLog } from '../../audit/event.ts';
import type { CaRing } from '../../ca/ca-ring.ts';
import type { Store } from '../../store/store.ts';
import { optionalBoolean, optionalString } from './admin-body.ts';
import { ok, type AdminEndpoint } from './endpoints.ts';
import { HttpError } from './http-errors.ts';

export interface CaEndpointDeps {
  readonly store: Store;
  readonly ring: CaRing;
  readonly audit: AuditLog;
}

const STEPS = ['prepare', 'activate', 'retire'] as const;
type Step = (typeof STEPS)[number];

/**
 * The root rollover: `GET /v1/ca` (viewer) → {mode, issuer, renewNow, roots}; `POST /v1/ca/prepare`
 * {}, `/v1/ca/activate` {renewNow?}, `/v1/ca/retire` {id?, force?} (admin) → {roots, status}. No body
 * at all is the same as {} (a bare `curl -X POST`).
 */
export function caEndpoints(deps: CaEndpointDeps): AdminEndpoint[] {
  return [
    { method: 'GET', path: /^\/v1\/ca$/, role: 'viewer', handle: async () => ok(await deps.ring.status()) },
    {
      method: 'POST',
      path: /^\/v1\/ca\/([^/]+)$/,
      role: 'admin',
      handle: async ({ who, params: [name], body }) => {
        const step = name as Step;
        if (!STEPS.includes(step)) throw new HttpError(404, 'not_found', `no such CA operation (known: ${STEPS.join(', ')})`);
        let roots;
        let detail: Record<string, unknown> = {};
        if (step === 'prepare') {
          await body([]);
          roots = [await deps.ring.prepare()];
        } else if (step === 'activate') {
          const renewNow = optionalBoolean(await body(['renewNow']), 'renewNow');
          detail = { renewNow };
          roots = [await deps.ring.activate({ renewNow })];
        } else {
          const fields = await body(['id', 'force']);
          const id = optionalString(fields, 'id');
          const force = optionalBoolean(fields, 'force');
          detail = { id, force };
          roots = await deps.ring.retire({ ...(id === undefined ? {} : { id }), force });
        }
        const ids = roots.map((r) => r.id);
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: `ca.${step}`, target: ids.join(','), detail });
        return ok({ roots, status: await deps.ring.status() });
      },
    },
  ];
}
