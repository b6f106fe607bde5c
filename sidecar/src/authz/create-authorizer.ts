import type { Authorizer } from './authorizer.ts';
import { GrpcStreamAuthorizer, type GrpcStreamAuthorizerOptions } from './grpc-stream-authorizer.ts';
import { GrpcUnaryAuthorizer } from './grpc-unary-authorizer.ts';

export type AuthzTransport = 'stream' | 'unary';

/** The authorizer for the `authzTransport` setting: both ask the control plane for every call. */
export function createAuthorizer(transport: AuthzTransport, o: GrpcStreamAuthorizerOptions): Authorizer {
  return transport === 'stream' ? new GrpcStreamAuthorizer(o) : new GrpcUnaryAuthorizer(o);
}
