import type { IncomingMessage, ServerResponse } from 'node:http';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { sendJson, type AdminRoute } from '@airlock/common/telemetry';
import { hashToken, newSecretToken } from '../../attestation/token-hash.ts';
import type { DocumentKind, Explanation, PolicyStore } from '../../policy/policy-store.ts';
import type { Store } from '../../store/store.ts';
import { ADMIN_ROLES, type AdminRole, type RequireRole } from './admin-auth.ts';
import { objectBody, readJson } from './admin-body.ts';
import { MAX_POLICY_BYTES, type AdminLimits } from './admin-limits.ts';
import { HttpError, sendError } from './http-errors.ts';

export const MAX_HISTORY = 1000;
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export interface PolicyRouteDeps {
  readonly store: Store;
  readonly policies: PolicyStore;
  readonly requireRole: RequireRole;
  readonly logger: Logger;
  /** Where bundles are read (a worker thread), within the admin limits. */
  readonly limits: AdminLimits;
  /** Revoked identities, so explain answers as Authorize would. */
  readonly isRevoked?: (spiffeId: string) => boolean;
}

type Handler = (req: IncomingMessage, params: readonly string[]) => Promise<{ status: number; body: unknown }>;

interface Route {
  readonly method: string;
  readonly path: RegExp;
  readonly handle: Handler;
}

/**
 * The policy admin API under /v1/ (JSON): get, apply, diff, delete, history, rollback, explain,
 * agents and API tokens. Every route checks its role first; changes are audited by PolicyStore.
 */
export function policyRoutes(deps: PolicyRouteDeps): AdminRoute {
  const p = deps.policies;
  const ok = (body: unknown, status = 200): { status: number; body: unknown } => ({ status, body });
  const list = (kind: DocumentKind) => ({ version: p.version(), items: p.entries().filter((e) => e.kind === kind).map((e) => ({ name: e.name, yaml: e.yaml })) });

  const routes: Route[] = [
    { method: 'GET', path: /^\/v1\/policy$/, handle: async (req) => {
      await deps.requireRole(req, 'viewer');
      return ok({ version: p.version(), documents: p.entries() });
    } },
    { method: 'GET', path: /^\/v1\/policy\/versions\/(\d{1,9})$/, handle: async (req, [v]) => {
      await deps.requireRole(req, 'viewer');
      return ok({ version: Number(v), documents: await p.versionEntries(Number(v)) });
    } },
    { method: 'GET', path: /^\/v1\/policy\/history$/, handle: async (req) => {
      await deps.requireRole(req, 'viewer');
      return ok({ version: p.version(), versions: await p.history(MAX_HISTORY) });
    } },
    { method: 'POST', path: /^\/v1\/policy\/(apply|diff)$/, handle: async (req, [op]) => {
      const who = await deps.requireRole(req, op === 'apply' ? 'editor' : 'viewer');
      // The body is read inside the caller's slot: a flood of bundles is not buffered at once.
      return deps.limits.run(who, `POST /v1/policy/${op ?? ''}`, async () => {
        const body = objectBody(await readJson(req, MAX_POLICY_BYTES), ['yaml', 'file']);
        const yaml = requiredString(body, 'yaml');
        const file = optionalNonEmptyString(body, 'file') ?? 'request';
        return ok(op === 'diff' ? await deps.limits.diff(yaml, file) : await deps.limits.apply(yaml, file, who.name));
      });
    } },
    { method: 'POST', path: /^\/v1\/policy\/rollback$/, handle: async (req) => {
      const who = await deps.requireRole(req, 'editor');
      const body = objectBody(await readJson(req), ['to']);
      const to = body.to;
      if (typeof to !== 'number' || !Number.isInteger(to) || to < 1) throw new AirlockError(ErrorCode.BadRequest, '"to" must be a version number (1 or more)');
      return ok(await p.rollback(to, who.name));
    } },
    { method: 'GET', path: /^\/v1\/segments$/, handle: async (req) => {
      await deps.requireRole(req, 'viewer');
      return ok(list('Segment'));
    } },
    { method: 'GET', path: /^\/v1\/policies$/, handle: async (req) => {
      await deps.requireRole(req, 'viewer');
      return ok(list('Policy'));
    } },
    { method: 'DELETE', path: /^\/v1\/(segments|policies)\/([^/]+)$/, handle: async (req, [kinds, name]) => {
      const who = await deps.requireRole(req, 'editor');
      const n = checkDocumentName(decodeURIComponent(name ?? ''));
      return ok(await p.delete(kinds === 'segments' ? 'Segment' : 'Policy', n, who.name));
    } },
    { method: 'GET', path: /^\/v1\/agents$/, handle: async (req) => {
      await deps.requireRole(req, 'viewer');
      return ok({ items: await deps.store.listAgents() });
    } },
    { method: 'POST', path: /^\/v1\/explain$/, handle: async (req) => {
      await deps.requireRole(req, 'viewer');
      const body = objectBody(await readJson(req), ['from', 'to', 'method', 'path', 'tool', 'headers']);
      return ok(explainCall(p, { from: requiredString(body, 'from'), to: requiredString(body, 'to'), method: optionalNonEmptyString(body, 'method'), path: optionalNonEmptyString(body, 'path'), tool: optionalNonEmptyString(body, 'tool'), headers: headerList(body.headers) }, deps.isRevoked));
    } },
    { method: 'POST', path: /^\/v1\/api-tokens$/, handle: async (req) => {
      const who = await deps.requireRole(req, 'admin');
      const body = objectBody(await readJson(req), ['name', 'role']);
      const name = requiredString(body, 'name');
      if (!NAME.test(name) || name === 'admin-token') throw new AirlockError(ErrorCode.BadRequest, '"name" must be a lowercase name (a-z, 0-9, "-", ".") other than admin-token');
      const role = requiredString(body, 'role');
      if (!(ADMIN_ROLES as readonly string[]).includes(role)) throw new AirlockError(ErrorCode.BadRequest, `"role" must be one of ${ADMIN_ROLES.join(', ')}`);
      const token = newSecretToken();
      // A name already taken is Conflict (the store says so).
      await deps.store.addApiToken({ hash: hashToken(token), name, role: role as AdminRole, createdAt: Date.now() });
      await deps.store.addAuditEvent({ at: Date.now(), actor: who.name, action: 'api-token.create', target: name, detail: JSON.stringify({ role }) });
      deps.logger.info({ audit: true, actor: who.name, action: 'api-token.create', name, role }, 'api token created');
      return ok({ name, role, token }, 201);
    } },
    { method: 'GET', path: /^\/v1\/audit$/, handle: async (req) => {
      await deps.requireRole(req, 'admin');
      return ok({ items: await deps.store.listAuditEvents(MAX_HISTORY) });
    } },
  ];

  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const matching = routes.map((r) => ({ r, m: r.path.exec(path) })).filter((x) => x.m !== null);
    if (matching.length === 0) return false;
    try {
      const hit = matching.find((x) => x.r.method === req.method);
      if (hit === undefined) {
        const allow = matching.map((x) => x.r.method).join(', ');
        res.setHeader('allow', allow);
        throw new HttpError(405, 'method_not_allowed', `use ${allow}`);
      }
      const { status, body } = await hit.r.handle(req, (hit.m as RegExpExecArray).slice(1));
      sendJson(res, status, body);
    } catch (err) {
      sendError(res, err);
    }
    return true;
  };
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
  readonly headers?: readonly { readonly name: string; readonly value: string }[] | undefined;
}

/** Checks an explain request and explains it: the one implementation behind both admin APIs. */
export function explainCall(p: PolicyStore, f: ExplainFields, isRevoked?: (spiffeId: string) => boolean): Explanation & { policyVersion: number } {
  const { host, port } = hostPort(f.to);
  // An MCP tool is called with a POST: that is what the sidecar would ask about.
  const method = f.tool === undefined ? f.method : (f.method ?? 'POST');
  if (method === undefined) throw new AirlockError(ErrorCode.BadRequest, '"method" must be a non-empty string');
  if (!/^[A-Za-z]{1,20}$/.test(method)) throw new AirlockError(ErrorCode.BadRequest, '"method" must be an HTTP method');
  const path = f.path ?? (method.toUpperCase() === 'CONNECT' ? '' : '/');
  // Methods are matched as sent (upper case by HTTP convention): explain what the sidecar would ask.
  return { policyVersion: p.version(), ...p.explain({ from: f.from, host, port, method, path, ...(f.tool === undefined ? {} : { mcp: { method: 'tools/call', tool: f.tool } }), ...(f.headers === undefined ? {} : { headers: f.headers }) }, isRevoked) };
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
