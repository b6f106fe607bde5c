import { checkDocumentName } from '../api/admin/policy-endpoints.ts';
import { ok, type AdminEndpoint } from '../api/admin/endpoints.ts';
import type { PolicyStore } from '../policy/policy-store.ts';
import type { ThreatFeeds } from './threat-feeds.ts';

/**
 * `GET /v1/threat-feeds` (viewer) → {version, items}: each ThreatFeed in force, the copy loaded
 * (version, entries, bad entries and a few of them, age) and why its last load failed, if it did;
 * `DELETE /v1/threat-feeds/NAME` (editor) removes the document, as for segments and policies.
 */
export function threatFeedEndpoints(deps: { readonly policies: PolicyStore; readonly threatFeeds: ThreatFeeds }): AdminEndpoint[] {
  return [
    { method: 'GET', path: /^\/v1\/threat-feeds$/, role: 'viewer', handle: () => Promise.resolve(ok({ version: deps.policies.version(), items: deps.threatFeeds.status() })) },
    {
      method: 'DELETE',
      path: /^\/v1\/threat-feeds\/([^/]+)$/,
      role: 'editor',
      handle: async ({ who, params: [name] }) => ok(await deps.policies.delete('ThreatFeed', checkDocumentName(decodeURIComponent(name ?? '')), who.name)),
    },
  ];
}
