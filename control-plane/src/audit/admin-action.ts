import type { Store } from '../store/store.ts';
import type { AdminRecord, AuditLog } from './event.ts';

/**
 * An admin action recorded once, in both places that keep it: the store's history (GET /v1/audit,
 * shared by every replica) and this replica's audit trail. The same fields land in both.
 */
export async function recordAdminAction(deps: { readonly store: Pick<Store, 'addAuditEvent'>; readonly audit: AuditLog }, record: AdminRecord, at = Date.now()): Promise<void> {
  await deps.store.addAuditEvent({ at, actor: record.actor, action: record.action, target: record.target, detail: JSON.stringify(record.detail) });
  deps.audit.admin(record);
}
