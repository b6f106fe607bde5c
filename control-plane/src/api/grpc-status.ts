import { status } from '@grpc/grpc-js';
import { ErrorCode, isAirlockError } from '@airlock/common/errors';

export interface GrpcFailure {
  readonly code: status;
  readonly details: string;
}

const GRPC_STATUS: Readonly<Record<ErrorCode, status>> = {
  [ErrorCode.Config]: status.INTERNAL,
  [ErrorCode.Denied]: status.PERMISSION_DENIED,
  [ErrorCode.AuthzUnavailable]: status.UNAVAILABLE,
  [ErrorCode.BadRequest]: status.INVALID_ARGUMENT,
  [ErrorCode.Unauthenticated]: status.UNAUTHENTICATED,
  [ErrorCode.PermissionDenied]: status.PERMISSION_DENIED,
  [ErrorCode.NotFound]: status.NOT_FOUND,
  [ErrorCode.Conflict]: status.ALREADY_EXISTS,
  [ErrorCode.UpstreamIdentity]: status.FAILED_PRECONDITION,
  [ErrorCode.UpstreamUnavailable]: status.UNAVAILABLE,
  [ErrorCode.UpstreamTimeout]: status.DEADLINE_EXCEEDED,
  [ErrorCode.ForbiddenDestination]: status.PERMISSION_DENIED,
  [ErrorCode.Attestation]: status.UNAUTHENTICATED,
  [ErrorCode.Policy]: status.FAILED_PRECONDITION,
  [ErrorCode.TooLarge]: status.RESOURCE_EXHAUSTED,
  [ErrorCode.TooManyRequests]: status.RESOURCE_EXHAUSTED,
  [ErrorCode.StoreUnavailable]: status.UNAVAILABLE,
  [ErrorCode.Internal]: status.INTERNAL,
};

/**
 * The one place the gRPC server turns errors into statuses. AirlockErrors carry messages written
 * for the caller; anything else is internal and its message is not leaked.
 */
export function toGrpcFailure(err: unknown): GrpcFailure {
  if (isAirlockError(err)) return { code: GRPC_STATUS[err.code], details: err.message };
  return { code: status.INTERNAL, details: 'internal error' };
}
