import { recordAdminAction } from '../audit/admin-action.ts';
import type { AuditLog } from '../audit/event.ts';
import type { Incidents } from '../incident/incidents.ts';
import type { Quarantines } from '../incident/quarantines.ts';
import type { Store } from '../store/store.ts';

/** Who a baseline's quarantine is set by (the incident's openedBy, the admin action's actor). */
export const BASELINE_ACTOR = 'baseline';

/**
 * The quarantine a Baseline with `response: quarantine` sets: as a responder's would be (the store
 * first, then the next decision), with its incident record and admin action, by actor `baseline`.
 */
export function containByBaseline(deps: { readonly quarantines: Quarantines; readonly incidents: Incidents; readonly store: Store; readonly audit: AuditLog }): (identity: string, reason: string) => Promise<void> {
  return async (identity, reason) => {
    const record = { spiffeId: identity, reason, actor: BASELINE_ACTOR, since: Date.now() };
    await deps.quarantines.quarantine(record);
    const incident = await deps.incidents.opened(record, { kind: 'identity', uri: identity }, BASELINE_ACTOR);
    await recordAdminAction(deps, { actor: BASELINE_ACTOR, action: 'agent.quarantine', target: identity, detail: { reason, incident: incident.id, matched: incident.matchedTotal } }, record.since);
  };
}
