import type { ControlPlanePool } from '../controlplane/control-plane-pool.ts';
import type { ControlPlaneEndpoints } from '../controlplane/endpoints.ts';
import type { Authorizer } from './authorizer.ts';
import { FailoverAuthorizer } from './failover-authorizer.ts';
import { GrpcStreamAuthorizer, type GrpcStreamAuthorizerOptions } from './grpc-stream-authorizer.ts';
import { GrpcUnaryAuthorizer } from './grpc-unary-authorizer.ts';

export type AuthzTransport = 'stream' | 'unary';

/**
 * The authorizer for the `authzTransport` setting, over every control-plane endpoint (failover):
 * both ask the control plane for every call.
 */
export function createAuthorizer(transport: AuthzTransport, o: Omit<GrpcStreamAuthorizerOptions, 'address'> & { readonly endpoints: ControlPlaneEndpoints; readonly pool: ControlPlanePool }): Authorizer {
  const { endpoints, pool, ...perEndpoint } = o;
  return new FailoverAuthorizer({
    endpoints,
    pool,
    timeoutMs: o.timeoutMs,
    authorizerFor: (address) => (transport === 'stream' ? new GrpcStreamAuthorizer({ ...perEndpoint, address }) : new GrpcUnaryAuthorizer({ ...perEndpoint, address })),
  });
}
