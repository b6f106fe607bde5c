import type { ServerResponse } from 'node:http';
import { ErrorCode, isAirlockError } from '@airlock/common/errors';
import { sendJson } from '@airlock/common/telemetry';

const HTTP: Readonly<Record<ErrorCode, { status: number; error: string }>> = {
  [ErrorCode.Config]: { status: 500, error: 'internal' },
  [ErrorCode.Denied]: { status: 403, error: 'denied' },
  [ErrorCode.AuthzUnavailable]: { status: 503, error: 'authorization_unavailable' },
  [ErrorCode.BadRequest]: { status: 400, error: 'bad_request' },
  [ErrorCode.Unauthenticated]: { status: 401, error: 'unauthenticated' },
  [ErrorCode.PermissionDenied]: { status: 403, error: 'permission_denied' },
  [ErrorCode.NotFound]: { status: 404, error: 'not_found' },
  [ErrorCode.Conflict]: { status: 409, error: 'conflict' },
  [ErrorCode.UpstreamIdentity]: { status: 502, error: 'upstream_identity_mismatch' },
  [ErrorCode.UpstreamUnavailable]: { status: 502, error: 'upstream_unavailable' },
  [ErrorCode.UpstreamTimeout]: { status: 504, error: 'upstream_timeout' },
  [ErrorCode.ForbiddenDestination]: { status: 403, error: 'forbidden_destination' },
  [ErrorCode.Attestation]: { status: 401, error: 'unauthenticated' },
  [ErrorCode.Policy]: { status: 400, error: 'policy_invalid' },
  [ErrorCode.TooLarge]: { status: 413, error: 'too_large' },
  [ErrorCode.TooManyRequests]: { status: 429, error: 'too_many_requests' },
  [ErrorCode.StoreUnavailable]: { status: 503, error: 'store_unavailable' },
  [ErrorCode.Internal]: { status: 500, error: 'internal' },
};

/** Errors that are not AirlockErrors: their own status, e.g. 413 for a body over the limit. */
export class HttpError extends Error {
  readonly status: number;
  readonly error: string;

  constructor(status: number, error: string, message: string) {
    super(message);
    this.status = status;
    this.error = error;
  }
}

/** The one place the admin API turns errors into a status and a JSON body; internals are not leaked. */
export function sendError(res: ServerResponse, err: unknown): void {
  // The rest of an oversized body is not read (nor any of a body refused for too many requests in
  // flight): the connection cannot carry another request.
  if ((err instanceof HttpError && err.status === 413) || (isAirlockError(err) && err.code === ErrorCode.TooManyRequests)) res.setHeader('connection', 'close');
  if (err instanceof HttpError) {
    sendJson(res, err.status, { error: err.error, reason: err.message });
  } else if (isAirlockError(err)) {
    const m = HTTP[err.code];
    // Admin work is short: a slot frees within seconds.
    if (err.code === ErrorCode.TooManyRequests) res.setHeader('retry-after', '1');
    sendJson(res, m.status, { error: m.error, reason: err.message });
  } else {
    sendJson(res, 500, { error: 'internal', reason: 'internal error' });
  }
}
