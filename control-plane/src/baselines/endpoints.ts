import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { recordAdminAction } from '../audit/admin-action.ts';
import type { AuditLog } from '../audit/event.ts';
import { optionalString } from '../api/admin/admin-body.ts';
import { ok, type AdminEndpoint } from '../api/admin/endpoints.ts';
import type { BaselineRecord, Store } from '../store/store.ts';
import type { Baselines } from './baselines.ts';
import { MAX_FLOW_CHARS } from './flows.ts';

/** At most this many identities in one listing (narrow it with ?identity=). */
export const MAX_LISTED_BASELINES = 1000;

export interface BaselineEndpointDeps {
  readonly trustDomain: string;
  readonly baselines: Baselines;
  readonly store: Store;
  /** Resetting or accepting changes what is judged normal: audited. */
  readonly audit: AuditLog;
}

const iso = (at: number): string => new Date(at).toISOString();

function view(r: BaselineRecord) {
  return {
    identity: r.spiffeId,
    startedAt: iso(r.startedAt),
    updatedAt: iso(r.updatedAt),
    windowSeconds: r.windowMs / 1000,
    droppedFlows: r.droppedFlows,
    flows: r.flows.map((f) => ({ flow: f.flow, state: f.normal ? (f.acceptedBy === undefined ? 'learned' : 'accepted') : 'anomaly', calls: f.calls, peak: f.peak, firstSeen: iso(f.firstSeen), lastSeen: iso(f.lastSeen), ...(f.acceptedBy === undefined ? {} : { acceptedBy: f.acceptedBy }) })),
  };
}

/**
 * Behaviour baselines (README "Behaviour baselines"), as this replica holds them:
 * `GET /v1/baselines[?identity=ID]` (viewer) → {items, truncated}; `POST /v1/baselines/reset`
 * {identity} (responder) → it learns again from its next call; `POST /v1/baselines/accept`
 * {identity, flow} (responder) → that flow is normal from now on. Both audited
 * (`baseline.reset`, `baseline.accept`).
 */
export function baselineEndpoints(deps: BaselineEndpointDeps): AdminEndpoint[] {
  const identityOf = (value: string | undefined): string => {
    if (value === undefined || value === '') throw new AirlockError(ErrorCode.BadRequest, '"identity" is required: a SPIFFE ID');
    const id = parseSpiffeId(value);
    if (id.trustDomain !== deps.trustDomain) throw new AirlockError(ErrorCode.BadRequest, `${value} is not in this control plane's trust domain ${deps.trustDomain}`);
    return id.uri;
  };
  return [
    {
      method: 'GET',
      path: /^\/v1\/baselines$/,
      role: 'viewer',
      handle: ({ req }) => {
        const asked = new URL(req.url ?? '/', 'http://admin').searchParams.get('identity');
        if (asked !== null) {
          const r = deps.baselines.get(identityOf(asked));
          return Promise.resolve(ok({ items: r === undefined ? [] : [view(r)], truncated: false }));
        }
        const all = deps.baselines.list();
        return Promise.resolve(ok({ items: all.slice(0, MAX_LISTED_BASELINES).map(view), truncated: all.length > MAX_LISTED_BASELINES }));
      },
    },
    {
      method: 'POST',
      path: /^\/v1\/baselines\/reset$/,
      role: 'responder',
      handle: async ({ who, body }) => {
        const identity = identityOf(optionalString(await body(['identity']), 'identity'));
        const reset = await deps.baselines.reset(identity);
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'baseline.reset', target: identity, detail: { hadBaseline: reset } });
        return ok({ identity, reset });
      },
    },
    {
      method: 'POST',
      path: /^\/v1\/baselines\/accept$/,
      role: 'responder',
      handle: async ({ who, body }) => {
        const fields = await body(['identity', 'flow']);
        const identity = identityOf(optionalString(fields, 'identity'));
        const flow = optionalString(fields, 'flow');
        if (flow === undefined || flow === '' || flow.length > MAX_FLOW_CHARS) throw new AirlockError(ErrorCode.BadRequest, `"flow" is required: a flow as \`airlock baselines list --identity ID\` shows it (at most ${MAX_FLOW_CHARS} characters)`);
        if (!(await deps.baselines.accept(identity, flow, who.name))) throw new AirlockError(ErrorCode.NotFound, `${identity} has no flow "${flow.slice(0, 120)}" in its baseline (see \`airlock baselines list --identity ${identity}\`)`);
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'baseline.accept', target: identity, detail: { flow } });
        return ok({ identity, flow, accepted: true });
      },
    },
  ];
}
