import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson, type AdminRoute } from '@airlock/common/telemetry';
import type { AdminRole, Principal, RequireRole } from './admin-auth.ts';
import { objectBody, readJson } from './admin-body.ts';
import { HttpError, sendError } from './http-errors.ts';

/** What an endpoint's handler gets: the caller (already granted the endpoint's role) and its request. */
export interface AdminRequest {
  readonly req: IncomingMessage;
  /** The path's capture groups. */
  readonly params: readonly string[];
  readonly who: Principal;
  /**
   * The JSON object body with only `known` fields, read within the endpoint's limit when called (so a
   * handler can read it inside an admin-limits slot); no body at all (Content-Length: 0) is {}.
   */
  readonly body: (known: readonly string[]) => Promise<Record<string, unknown>>;
}

/** One route of the admin JSON API. */
export interface AdminEndpoint {
  readonly method: 'GET' | 'POST' | 'DELETE';
  readonly path: RegExp;
  /** Checked before anything else is read. */
  readonly role: AdminRole;
  /** The largest body read (413 above); readJson's default (64 KiB) when unset. */
  readonly maxBodyBytes?: number;
  readonly handle: (r: AdminRequest) => Promise<{ readonly status: number; readonly body: unknown }>;
}

/**
 * Serves the admin API's endpoints, one path for every request: the path matched (none: not ours),
 * the method (405 with Allow), the caller's role, then the handler; every error answered by sendError.
 */
export function serveEndpoints(endpoints: readonly AdminEndpoint[], requireRole: RequireRole): AdminRoute {
  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const matching = endpoints.flatMap((e) => {
      const m = e.path.exec(path);
      return m === null ? [] : [{ e, params: m.slice(1) }];
    });
    if (matching.length === 0) return false;
    try {
      const hit = matching.find((x) => x.e.method === req.method);
      if (hit === undefined) {
        const allow = [...new Set(matching.map((x) => x.e.method))].join(', ');
        res.setHeader('allow', allow);
        throw new HttpError(405, 'method_not_allowed', `use ${allow}`);
      }
      const who = await requireRole(req, hit.e.role);
      const body = async (known: readonly string[]): Promise<Record<string, unknown>> => objectBody(req.headers['content-length'] === '0' ? {} : await readJson(req, hit.e.maxBodyBytes), known);
      const { status, body: answer } = await hit.e.handle({ req, params: hit.params, who, body });
      sendJson(res, status, answer);
    } catch (err) {
      sendError(res, err);
    }
    return true;
  };
}

export const ok = (body: unknown, status = 200): { status: number; body: unknown } => ({ status, body });
