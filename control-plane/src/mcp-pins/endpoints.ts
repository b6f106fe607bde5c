import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { recordAdminAction } from '../audit/admin-action.ts';
import type { AuditLog } from '../audit/event.ts';
import { optionalString } from '../api/admin/admin-body.ts';
import { ok, type AdminEndpoint } from '../api/admin/endpoints.ts';
import type { Store, ToolPinRecord } from '../store/store.ts';
import { isBlocked, type ToolPins } from './tool-pins.ts';

/** At most this many pins in one listing (narrow it with ?server=). */
export const MAX_LISTED_PINS = 5000;

export interface ToolPinEndpointDeps {
  readonly toolPins: ToolPins;
  readonly store: Store;
  /** Accepting a tool is a trust decision: audited. */
  readonly audit: AuditLog;
}

/** A pin as the admin API shows it: its state spelled out. */
function view(p: ToolPinRecord) {
  const state = p.pending === undefined ? 'pinned' : p.hash === '' ? (isBlocked(p) ? 'flagged (denied)' : 'flagged (alert)') : isBlocked(p) ? 'changed (denied)' : 'changed (alert)';
  return {
    server: p.server,
    tool: p.tool,
    state,
    hash: p.hash,
    pinnedAt: new Date(p.pinnedAt).toISOString(),
    pinnedBy: p.pinnedBy,
    ...(p.pending === undefined ? {} : { pending: { hash: p.pending.hash, seenAt: new Date(p.pending.seenAt).toISOString(), detectors: p.pending.flags, action: p.pending.action } }),
  };
}

/**
 * MCP tool pins (README "Tool pinning"): `GET /v1/mcp/tools[?server=S]` (viewer) → {items,
 * truncated}; `POST /v1/mcp/tools/accept` {server, tool, hash?} (responder) → the pin after: the
 * version awaiting acceptance (or `hash`, which must be it) becomes the pinned one, and calls to
 * the tool are decided by policy again. Audited as `mcp.tool.accept`.
 */
export function toolPinEndpoints(deps: ToolPinEndpointDeps): AdminEndpoint[] {
  return [
    {
      method: 'GET',
      path: /^\/v1\/mcp\/tools$/,
      role: 'viewer',
      handle: ({ req }) => {
        const server = new URL(req.url ?? '/', 'http://admin').searchParams.get('server') ?? undefined;
        const all = deps.toolPins.list(server === '' ? undefined : server);
        return Promise.resolve(ok({ items: all.slice(0, MAX_LISTED_PINS).map(view), truncated: all.length > MAX_LISTED_PINS }));
      },
    },
    {
      method: 'POST',
      path: /^\/v1\/mcp\/tools\/accept$/,
      role: 'responder',
      handle: async ({ who, body }) => {
        const fields = await body(['server', 'tool', 'hash']);
        const server = optionalString(fields, 'server');
        const tool = optionalString(fields, 'tool');
        if (server === undefined || server === '') throw new AirlockError(ErrorCode.BadRequest, '"server" is required: the MCP server, a SPIFFE ID or host:port as `airlock tools list` shows it');
        if (tool === undefined || tool === '') throw new AirlockError(ErrorCode.BadRequest, '"tool" is required: the tool name');
        const { before, after } = await deps.toolPins.accept(server, tool, optionalString(fields, 'hash'), who.name);
        await recordAdminAction(deps, {
          actor: who.name,
          role: who.role,
          action: 'mcp.tool.accept',
          target: `${server} ${tool}`,
          detail: { server, tool, accepted: after.hash, ...(before === undefined ? {} : { previous: before.hash }), ...(before?.pending === undefined ? {} : { detectors: before.pending.flags }) },
        });
        return ok(view(after));
      },
    },
  ];
}
