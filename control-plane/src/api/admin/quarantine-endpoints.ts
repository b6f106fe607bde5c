import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { recordAdminAction } from '../../audit/admin-action.ts';
import type { AuditLog } from '../../audit/event.ts';
import type { DecisionState } from '../../authz/decision-state.ts';
import type { Incidents } from '../../incident/incidents.ts';
import { labelTarget, segmentTarget, targetKey, targetOf, type QuarantineTarget } from '../../incident/quarantine-target.ts';
import type { Quarantines } from '../../incident/quarantines.ts';
import type { IncidentRecord, QuarantineRecord, Store } from '../../store/store.ts';
import { optionalString } from './admin-body.ts';
import { ok, type AdminEndpoint } from './endpoints.ts';

/** A quarantine lasts at most this long without being set again (a forgotten one ends). */
export const MAX_QUARANTINE_SECONDS = 30 * 24 * 3600;
/** `GET /v1/incidents` lists at most this many (the newest). */
export const MAX_LISTED_INCIDENTS = 500;

export interface QuarantineEndpointDeps {
  readonly trustDomain: string;
  readonly quarantines: Quarantines;
  readonly incidents: Incidents;
  readonly decisions: DecisionState;
  readonly store: Store;
  /** The audit trail: containment is a security event. */
  readonly audit: AuditLog;
}

const TARGET_FIELDS = ['identity', 'segment', 'selector'] as const;

/** How a quarantine is shown: its target's field (identity, segment or selector) and its particulars. */
function view(q: QuarantineRecord): Record<string, unknown> {
  return {
    ...targetView(q.spiffeId),
    reason: q.reason,
    actor: q.actor,
    since: new Date(q.since).toISOString(),
    until: q.until === undefined ? undefined : new Date(q.until).toISOString(),
  };
}

function targetView(key: string): Record<string, string> {
  const t = targetOf(key);
  return t.kind === 'identity' ? { identity: t.uri } : t.kind === 'segment' ? { segment: t.name } : { selector: `${t.key}=${t.value}` };
}

const iso = (at: number | undefined): string | undefined => (at === undefined ? undefined : new Date(at).toISOString());

/** An incident as answered: times in ISO 8601, its state; `full` adds the decisions. */
function incidentView(r: IncidentRecord, full: boolean, now = Date.now()): Record<string, unknown> {
  const state = r.releasedAt !== undefined ? 'released' : r.until !== undefined && r.until <= now ? 'expired' : 'open';
  const decisions = (list: IncidentRecord['before'] | undefined) => (list ?? []).map((d) => ({ ...d, at: iso(d.at) }));
  return {
    id: r.id,
    ...targetView(r.target),
    state,
    reason: r.reason,
    openedBy: r.openedBy,
    openedByRole: r.openedByRole,
    openedAt: iso(r.openedAt),
    until: iso(r.until),
    releasedAt: iso(r.releasedAt),
    releasedBy: r.releasedBy,
    matched: r.matched,
    matchedTotal: r.matchedTotal,
    ...(full ? { before: decisions(r.before), after: decisions(r.after) } : {}),
  };
}

/**
 * Incident containment (responder): `POST /v1/agents/quarantine` {identity | segment | selector
 * (`key=value`), reason, ttlSeconds?} → the quarantine, the identities it matches now and its
 * incident: from the next call every decision naming a match is denied (`quarantined`), selectors
 * judged at each decision (an agent joining later is contained too), and renewals refused;
 * `POST /v1/agents/release` {identity | segment | selector} → {…, released, incident};
 * `GET /v1/quarantines` (viewer) → {items}. Incident records (responder: they hold call details):
 * `GET /v1/incidents` → {items}, `GET /v1/incidents/ID` → the record with its decisions; each read audited.
 */
export function quarantineEndpoints(deps: QuarantineEndpointDeps): AdminEndpoint[] {
  const targetOfBody = (fields: Record<string, unknown>): QuarantineTarget => {
    const given = TARGET_FIELDS.filter((f) => fields[f] !== undefined);
    if (given.length !== 1) throw new AirlockError(ErrorCode.BadRequest, 'exactly one of "identity" (a SPIFFE ID), "segment" (a segment name) or "selector" (a label key=value) is required');
    const identity = optionalString(fields, 'identity');
    if (identity !== undefined) {
      const id = parseSpiffeId(identity);
      if (id.trustDomain !== deps.trustDomain) throw new AirlockError(ErrorCode.BadRequest, `${identity} is not in this control plane's trust domain ${deps.trustDomain}`);
      return { kind: 'identity', uri: id.uri };
    }
    const segment = optionalString(fields, 'segment');
    if (segment !== undefined) return segmentTarget(segment);
    return labelTarget(optionalString(fields, 'selector') ?? '');
  };
  return [
    {
      method: 'POST',
      path: /^\/v1\/agents\/quarantine$/,
      role: 'responder',
      handle: async ({ who, body }) => {
        const fields = await body([...TARGET_FIELDS, 'reason', 'ttlSeconds']);
        const target = targetOfBody(fields);
        const reason = optionalString(fields, 'reason')?.trim() ?? '';
        if (reason === '' || reason.length > 500) throw new AirlockError(ErrorCode.BadRequest, '"reason" is required: what the incident is (at most 500 characters)');
        const ttl = fields.ttlSeconds;
        if (ttl !== undefined && (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_QUARANTINE_SECONDS)) {
          throw new AirlockError(ErrorCode.BadRequest, `"ttlSeconds" must be a whole number from 1 to ${MAX_QUARANTINE_SECONDS}`);
        }
        // A typo would contain no one: a segment must be defined in the policy in force.
        if (target.kind === 'segment' && !deps.decisions.current().engine.segmentNames.includes(target.name)) {
          throw new AirlockError(ErrorCode.BadRequest, `segment "${target.name}" is not defined in the policy in force (see \`airlock policy show\`)`);
        }
        const since = Date.now();
        const key = targetKey(target);
        const record = { spiffeId: key, reason, actor: who.name, since, ...(ttl === undefined ? {} : { until: since + ttl * 1000 }) };
        await deps.quarantines.quarantine(record);
        const incident = await deps.incidents.opened(record, target, who.role);
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'agent.quarantine', target: key, detail: { reason, incident: incident.id, matched: incident.matchedTotal, ...matchedIdsOf(target, incident.matched), ...(record.until === undefined ? {} : { until: record.until }) } }, since);
        return ok({ ...view(record), matched: incident.matched, matchedTotal: incident.matchedTotal, incident: incident.id });
      },
    },
    {
      method: 'POST',
      path: /^\/v1\/agents\/release$/,
      role: 'responder',
      handle: async ({ who, body }) => {
        const target = targetOfBody(await body([...TARGET_FIELDS]));
        const key = targetKey(target);
        const at = Date.now();
        const released = await deps.quarantines.release(key);
        const incident = await deps.incidents.released(key, target, who.name, at);
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'agent.release', target: key, detail: { wasQuarantined: released !== undefined, ...(incident === undefined ? {} : { incident: incident.id, ...matchedIdsOf(target, incident.matched) }) } }, at);
        // Released by name but still inside a quarantined segment or label: say so.
        const still = target.kind === 'identity' ? deps.quarantines.quarantineOf(parseSpiffeId(target.uri), at) : undefined;
        return ok({
          ...targetView(key),
          released: released !== undefined,
          ...(incident === undefined ? {} : { incident: incident.id }),
          ...(still === undefined ? {} : { stillQuarantinedBy: targetView(still.spiffeId) }),
        });
      },
    },
    { method: 'GET', path: /^\/v1\/quarantines$/, role: 'viewer', handle: () => Promise.resolve(ok({ items: deps.quarantines.list().map(view) })) },
    {
      method: 'GET',
      path: /^\/v1\/incidents$/,
      role: 'responder',
      handle: async ({ who }) => {
        const items = await deps.incidents.list(MAX_LISTED_INCIDENTS);
        // Incident records hold call details: who read them is kept too.
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'incident.list', target: 'incidents', detail: { count: items.length } });
        return ok({ items: items.map((r) => incidentView(r, false)) });
      },
    },
    {
      method: 'GET',
      path: /^\/v1\/incidents\/([^/]+)$/,
      role: 'responder',
      handle: async ({ who, params }) => {
        const id = params[0] ?? '';
        if (!/^inc-\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}$/.test(id)) throw new AirlockError(ErrorCode.BadRequest, `"${id.slice(0, 80)}" is not an incident id (inc-YYYYMMDDTHHMMSS.mmmZ-xxxxxx; see \`airlock incident list\`)`);
        const r = await deps.incidents.show(id);
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'incident.show', target: id, detail: { found: r !== undefined } });
        if (r === undefined) throw new AirlockError(ErrorCode.NotFound, `no incident ${id}`);
        return ok(incidentView(r, true));
      },
    },
  ];
}

/**
 * A selector's quarantine or release names, in its audit detail, the identities its incident
 * contained (bounded as the record is, MAX_MATCHED): `airlock export --identity` finds it by them.
 */
function matchedIdsOf(target: QuarantineTarget, matched: readonly string[]): { matchedIds?: readonly string[] } {
  return target.kind === 'identity' ? {} : { matchedIds: matched };
}
