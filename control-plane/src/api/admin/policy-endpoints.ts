import { argumentsJson, parseArgumentsJson } from '@airlock/common/mcp-arguments';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { hashToken, newSecretToken } from '../../attestation/token-hash.ts';
import type { DecisionState } from '../../authz/decision-state.ts';
import { explain, type Explanation } from '../../authz/explain.ts';
import type { DocumentKind, PolicyStore } from '../../policy/policy-store.ts';
import { recordAdminAction } from '../../audit/admin-action.ts';
import type { AuditLog } from '../../audit/event.ts';
import type { Store } from '../../store/store.ts';
import { ADMIN_ROLES, ADMIN_TOKEN_PRINCIPAL, type AdminRole } from './admin-auth.ts';
import { MAX_POLICY_BYTES, type AdminLimits } from './admin-limits.ts';
import { ok, type AdminEndpoint } from './endpoints.ts';

export const MAX_HISTORY = 1000;
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export interface PolicyEndpointDeps {
  readonly store: Store;
  readonly policies: PolicyStore;
  readonly audit: AuditLog;
  /** Where bundles are read (a worker thread), within the admin limits. */
  readonly limits: AdminLimits;
  /** What decisions read: explain answers on the same snapshot as Authorize would. */
  readonly decisions: DecisionState;
  readonly trustDomain: string;
}

/**
 * The policy admin API under /v1/ (JSON): get, apply, diff, delete, history, rollback, explain,
 * agents, API tokens and the audit trail. Changes are audited by PolicyStore.
 */
export function policyEndpoints(deps: PolicyEndpointDeps): AdminEndpoint[] {
  const p = deps.policies;
  const list = (kind: DocumentKind) => ({ version: p.version(), items: p.entries().filter((e) => e.kind === kind).map((e) => ({ name: e.name, yaml: e.yaml })) });
  return [
    { method: 'GET', path: /^\/v1\/policy$/, role: 'viewer', handle: () => Promise.resolve(ok({ version: p.version(), documents: p.entries() })) },
    { method: 'GET', path: /^\/v1\/policy\/versions\/(\d{1,9})$/, role: 'viewer', handle: async ({ params: [v] }) => ok({ version: Number(v), documents: await p.versionEntries(Number(v)) }) },
    { method: 'GET', path: /^\/v1\/policy\/history$/, role: 'viewer', handle: async () => ok({ version: p.version(), versions: await p.history(MAX_HISTORY) }) },
    ...(['apply', 'diff'] as const).map((op): AdminEndpoint => ({
      method: 'POST',
      path: new RegExp(`^/v1/policy/${op}$`),
      role: op === 'apply' ? 'editor' : 'viewer',
      maxBodyBytes: MAX_POLICY_BYTES,
      // The body is read inside the caller's slot: a flood of bundles is not buffered at once.
      handle: ({ who, body }) =>
        deps.limits.run(who, `POST /v1/policy/${op}`, async () => {
          const fields = await body(['yaml', 'file']);
          const yaml = requiredString(fields, 'yaml');
          const file = optionalNonEmptyString(fields, 'file') ?? 'request';
          return ok(op === 'diff' ? await deps.limits.diff(yaml, file) : await deps.limits.apply(yaml, file, who.name));
        }),
    })),
    {
      method: 'POST',
      path: /^\/v1\/policy\/rollback$/,
      role: 'editor',
      handle: async ({ who, body }) => {
        const { to } = await body(['to']);
        if (typeof to !== 'number' || !Number.isInteger(to) || to < 1) throw new AirlockError(ErrorCode.BadRequest, '"to" must be a version number (1 or more)');
        return ok(await p.rollback(to, who.name));
      },
    },
    { method: 'GET', path: /^\/v1\/segments$/, role: 'viewer', handle: () => Promise.resolve(ok(list('Segment'))) },
    { method: 'GET', path: /^\/v1\/policies$/, role: 'viewer', handle: () => Promise.resolve(ok(list('Policy'))) },
    { method: 'GET', path: /^\/v1\/ratelimits$/, role: 'viewer', handle: () => Promise.resolve(ok(list('RateLimit'))) },
    {
      method: 'DELETE',
      path: /^\/v1\/(segments|policies|ratelimits|baseline-documents)\/([^/]+)$/,
      role: 'editor',
      handle: async ({ who, params: [kinds, name] }) => ok(await p.delete(kinds === 'segments' ? 'Segment' : kinds === 'ratelimits' ? 'RateLimit' : kinds === 'baseline-documents' ? 'Baseline' : 'Policy', checkDocumentName(decodeURIComponent(name ?? '')), who.name)),
    },
    { method: 'GET', path: /^\/v1\/agents$/, role: 'viewer', handle: async () => ok({ items: await deps.store.listAgents() }) },
    {
      method: 'POST',
      path: /^\/v1\/explain$/,
      role: 'viewer',
      handle: async ({ body }) => {
        const f = await body(['from', 'to', 'method', 'path', 'tool', 'args', 'headers']);
        return ok(explainCall({ from: requiredString(f, 'from'), to: requiredString(f, 'to'), method: optionalNonEmptyString(f, 'method'), path: optionalNonEmptyString(f, 'path'), tool: optionalNonEmptyString(f, 'tool'), args: f.args, headers: headerList(f.headers) }, deps.decisions, deps.trustDomain));
      },
    },
    {
      method: 'POST',
      path: /^\/v1\/api-tokens$/,
      role: 'admin',
      handle: async ({ who, body }) => {
        const fields = await body(['name', 'role']);
        const name = requiredString(fields, 'name');
        if (!NAME.test(name) || name === ADMIN_TOKEN_PRINCIPAL) throw new AirlockError(ErrorCode.BadRequest, '"name" must be a lowercase name (a-z, 0-9, "-", ".") other than admin-token');
        const role = requiredString(fields, 'role');
        if (!(ADMIN_ROLES as readonly string[]).includes(role)) throw new AirlockError(ErrorCode.BadRequest, `"role" must be one of ${ADMIN_ROLES.join(', ')}`);
        const token = newSecretToken();
        // A name already taken is Conflict (the store says so).
        await deps.store.addApiToken({ hash: hashToken(token), name, role: role as AdminRole, createdAt: Date.now() });
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'api-token.create', target: name, detail: { role } });
        return ok({ name, role, token }, 201);
      },
    },
    {
      method: 'GET',
      path: /^\/v1\/api-tokens$/,
      role: 'admin',
      // Never the hash: it would let a reader of this list try tokens offline.
      handle: async () =>
        ok({ items: (await deps.store.listApiTokens()).map((t) => ({ name: t.name, role: t.role, createdAt: new Date(t.createdAt).toISOString(), ...(t.revokedAt === undefined ? {} : { revokedAt: new Date(t.revokedAt).toISOString() }) })) }),
    },
    {
      method: 'POST',
      path: /^\/v1\/api-tokens\/revoke$/,
      role: 'admin',
      handle: async ({ who, body }) => {
        const name = requiredString(await body(['name']), 'name');
        const before = (await deps.store.listApiTokens()).find((t) => t.name === name);
        const revoked = await deps.store.revokeApiToken(name, Date.now());
        if (revoked === undefined) throw new AirlockError(ErrorCode.NotFound, `no API token is named "${name}"`);
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'api-token.revoke', target: name, detail: { alreadyRevoked: before?.revokedAt !== undefined } });
        return ok({ name, revokedAt: new Date(revoked.revokedAt ?? Date.now()).toISOString(), alreadyRevoked: before?.revokedAt !== undefined });
      },
    },
    {
      method: 'POST',
      path: /^\/v1\/admin-tokens\/retire$/,
      role: 'admin',
      handle: async ({ who, body }) => {
        await body([]);
        // Called with an admin token, retiring them would leave the caller, and maybe everyone, locked out.
        if (who.name === ADMIN_TOKEN_PRINCIPAL) throw new AirlockError(ErrorCode.Conflict, 'retire the admin tokens with the API token or admin certificate (role admin) that replaces them, not with an admin token');
        const alreadyRetiredAt = await deps.store.adminTokensRetiredAt();
        const retired = await deps.store.retireAdminTokens(Date.now());
        await recordAdminAction(deps, { actor: who.name, role: who.role, action: 'admin-token.retire', target: 'admin-tokens', detail: { retired } });
        return ok({ retired, retiredAt: new Date((await deps.store.adminTokensRetiredAt()) ?? Date.now()).toISOString(), alreadyRetired: alreadyRetiredAt !== undefined });
      },
    },
    { method: 'GET', path: /^\/v1\/audit$/, role: 'admin', handle: async () => ok({ items: await deps.store.listAuditEvents(MAX_HISTORY) }) },
  ];
}

function requiredString(body: Record<string, unknown>, field: string): string {
  const v = body[field];
  if (typeof v !== 'string' || v === '') throw new AirlockError(ErrorCode.BadRequest, `"${field}" must be a non-empty string`);
  return v;
}

function optionalNonEmptyString(body: Record<string, unknown>, field: string): string | undefined {
  return body[field] === undefined ? undefined : requiredString(body, field);
}

/** `headers` of an explain request: a list of { name, value } (one per occurrence). */
function headerList(v: unknown): { name: string; value: string }[] | undefined {
  if (v === undefined) return undefined;
  const bad = new AirlockError(ErrorCode.BadRequest, '"headers" must be a list of { "name": string, "value": string }');
  if (!Array.isArray(v)) throw bad;
  return v.map((h: unknown) => {
    if (typeof h !== 'object' || h === null) throw bad;
    const { name, value } = h as Record<string, unknown>;
    if (typeof name !== 'string' || name === '' || typeof value !== 'string' || Object.keys(h).length !== 2) throw bad;
    return { name, value };
  });
}

/** What explain (HTTP and gRPC) is asked: `to` is HOST[:PORT]; method defaults to POST with a tool. */
export interface ExplainFields {
  readonly from: string;
  readonly to: string;
  readonly method: string | undefined;
  readonly path: string | undefined;
  readonly tool: string | undefined;
  /** The tool's arguments (a JSON object; `{}` when undefined), judged as the sidecar would send them. */
  readonly args?: unknown;
  readonly headers?: readonly { readonly name: string; readonly value: string }[] | undefined;
}

/** Checks an explain request and explains it: the one implementation behind both admin APIs. */
export function explainCall(f: ExplainFields, decisions: DecisionState, trustDomain: string): Explanation & { policyVersion: number } {
  const { host, port } = hostPort(f.to);
  // An MCP tool is called with a POST: that is what the sidecar would ask about.
  const method = f.tool === undefined ? f.method : (f.method ?? 'POST');
  if (method === undefined) throw new AirlockError(ErrorCode.BadRequest, '"method" must be a non-empty string');
  if (!/^[A-Za-z]{1,20}$/.test(method)) throw new AirlockError(ErrorCode.BadRequest, '"method" must be an HTTP method');
  const path = f.path ?? (method.toUpperCase() === 'CONNECT' ? '' : '/');
  // Methods are matched as sent (upper case by HTTP convention): explain what the sidecar would ask.
  if (f.args !== undefined && f.tool === undefined) throw new AirlockError(ErrorCode.BadRequest, '"args" needs "tool"');
  const args = argumentsJson(f.args);
  if ('unreadable' in args) throw new AirlockError(ErrorCode.BadRequest, `"args": ${args.unreadable}`);
  const snapshot = decisions.current();
  const mcp = f.tool === undefined ? {} : { mcp: { method: 'tools/call', tool: f.tool, arguments: parseArgumentsJson(args.json) } };
  return { policyVersion: snapshot.engine.version, ...explain(snapshot, trustDomain, { from: f.from, host, port, method, path, ...mcp, ...(f.headers === undefined ? {} : { headers: f.headers }) }) };
}

/** A document name as the API accepts it (what the loader allows). */
export function checkDocumentName(n: string): string {
  if (!NAME.test(n)) throw new AirlockError(ErrorCode.BadRequest, `"${n}" is not a document name`);
  return n;
}

/** `HOST[:PORT]`, port 80 by default (what a plain `http://host/` call is). */
export function hostPort(to: string): { host: string; port: number } {
  const m = /^([A-Za-z0-9.-]{1,253})(?::(\d{1,5}))?$/.exec(to);
  const port = m?.[2] === undefined ? 80 : Number(m[2]);
  if (m?.[1] === undefined || port < 1 || port > 65535) throw new AirlockError(ErrorCode.BadRequest, `"to" must be HOST or HOST:PORT, got "${to}"`);
  return { host: m[1], port };
}
