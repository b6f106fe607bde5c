import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { recordAdminAction } from '../../audit/admin-action.ts';
import type { AuditLog } from '../../audit/event.ts';
import type { Quarantines } from '../../incident/quarantines.ts';
import type { Store } from '../../store/store.ts';
import { optionalString } from './admin-body.ts';
import { ok, type AdminEndpoint } from './endpoints.ts';

/** A quarantine lasts at most this long without being set again (a forgotten one ends). */
export const MAX_QUARANTINE_SECONDS = 30 * 24 * 3600;

export interface QuarantineEndpointDeps {
  readonly trustDomain: string;
  readonly quarantines: Quarantines;
  readonly store: Store;
  /** The audit trail: containment is a security event. */
  readonly audit: AuditLog;
}

/**
 * Incident containment (responder): `POST /v1/agents/quarantine` {identity, reason, ttlSeconds?} →
 * {identity, reason, since, until}: from the next call every decision naming it is denied
 * (`quarantined`), and its renewals refused; `POST /v1/agents/release` {identity} → {identity,
 * released}; `GET /v1/quarantines` (viewer) → {items}.
 */
export function quarantineEndpoints(deps: QuarantineEndpointDeps): AdminEndpoint[] {
  const identityOf = (fields: Record<string, unknown>): string => {
    const identity = optionalString(fields, 'identity');
    if (identity === undefined) throw new AirlockError(ErrorCode.BadRequest, '"identity" is required (a SPIFFE ID)');
    const id = parseSpiffeId(identity);
    if (id.trustDomain !== deps.trustDomain) throw new AirlockError(ErrorCode.BadRequest, `${identity} is not in this control plane's trust domain ${deps.trustDomain}`);
    return id.uri;
  };
  const view = (q: { spiffeId: string; reason: string; actor: string; since: number; until?: number }) => ({
    identity: q.spiffeId,
    reason: q.reason,
    actor: q.actor,
    since: new Date(q.since).toISOString(),
    until: q.until === undefined ? undefined : new Date(q.until).toISOString(),
  });
  return [
    {
      method: 'POST',
      path: /^\/v1\/agents\/quarantine$/,
      role: 'responder',
      handle: async ({ who, body }) => {
        const fields = await body(['identity', 'reason', 'ttlSeconds']);
        const spiffeId = identityOf(fields);
        const reason = optionalString(fields, 'reason')?.trim() ?? '';
        if (reason === '' || reason.length > 500) throw new AirlockError(ErrorCode.BadRequest, '"reason" is required: what the incident is (at most 500 characters)');
        const ttl = fields.ttlSeconds;
        if (ttl !== undefined && (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_QUARANTINE_SECONDS)) {
          throw new AirlockError(ErrorCode.BadRequest, `"ttlSeconds" must be a whole number from 1 to ${MAX_QUARANTINE_SECONDS}`);
        }
        const since = Date.now();
        const record = { spiffeId, reason, actor: who.name, since, ...(ttl === undefined ? {} : { until: since + ttl * 1000 }) };
        await deps.quarantines.quarantine(record);
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'agent.quarantine', target: spiffeId, detail: { reason, ...(record.until === undefined ? {} : { until: record.until }) } }, since);
        return ok(view(record));
      },
    },
    {
      method: 'POST',
      path: /^\/v1\/agents\/release$/,
      role: 'responder',
      handle: async ({ who, body }) => {
        const spiffeId = identityOf(await body(['identity']));
        const released = await deps.quarantines.release(spiffeId);
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'agent.release', target: spiffeId, detail: { wasQuarantined: released !== undefined } });
        return ok({ identity: spiffeId, released: released !== undefined });
      },
    },
    { method: 'GET', path: /^\/v1\/quarantines$/, role: 'viewer', handle: () => Promise.resolve(ok({ items: deps.quarantines.list().map(view) })) },
  ];
}
