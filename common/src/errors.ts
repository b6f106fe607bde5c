/**
 * Errors with stable codes. Callers match on `code`, never on the message; each server maps codes
 * to HTTP or gRPC statuses in one place (see README "Error codes").
 */
export const ErrorCode = {
  Config: 'AIRLOCK_CONFIG_INVALID',
  Denied: 'AIRLOCK_DENIED',
  AuthzUnavailable: 'AIRLOCK_AUTHZ_UNAVAILABLE',
  BadRequest: 'AIRLOCK_BAD_REQUEST',
  Unauthenticated: 'AIRLOCK_UNAUTHENTICATED',
  PermissionDenied: 'AIRLOCK_PERMISSION_DENIED',
  NotFound: 'AIRLOCK_NOT_FOUND',
  Conflict: 'AIRLOCK_CONFLICT',
  UpstreamIdentity: 'AIRLOCK_UPSTREAM_IDENTITY_MISMATCH',
  UpstreamUnavailable: 'AIRLOCK_UPSTREAM_UNAVAILABLE',
  /** The destination did not connect, finish its handshake, send headers or the next body bytes in time (upstream*Timeout). */
  UpstreamTimeout: 'AIRLOCK_UPSTREAM_TIMEOUT',
  /** An external destination resolves to (or is) an address the sidecar never dials: metadata, loopback, its own ports… */
  ForbiddenDestination: 'AIRLOCK_FORBIDDEN_DESTINATION',
  Attestation: 'AIRLOCK_ATTESTATION_FAILED',
  Policy: 'AIRLOCK_POLICY_INVALID',
  /** Over a size or work limit (a policy's documents, nodes, nesting…); the message names it. */
  TooLarge: 'AIRLOCK_TOO_LARGE',
  /** Too much admin work in flight for this caller (or in all); retry shortly. */
  TooManyRequests: 'AIRLOCK_TOO_MANY_REQUESTS',
  /** The store (etcd) cannot be reached or has no quorum: changes are refused, decisions go on. */
  StoreUnavailable: 'AIRLOCK_STORE_UNAVAILABLE',
  Internal: 'AIRLOCK_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class AirlockError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AirlockError';
    this.code = code;
  }
}

/** Every problem of a config, collected before failing so the user fixes them in one go. */
export class ConfigError extends AirlockError {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(ErrorCode.Config, `invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export function isAirlockError(err: unknown): err is AirlockError {
  return err instanceof AirlockError;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
