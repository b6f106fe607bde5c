import { join } from 'node:path';
import type { Server, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';

/** How often Watch callers of grpc.health.v1.Health hear a change of readiness (Check is always current). */
const HEALTH_REFRESH_MS = 1000;

/** The full name of a grpc-js service definition, e.g. airlock.identity.v1.IdentityService. */
export function serviceName(definition: ServiceDefinition): string {
  const first = Object.values(definition)[0];
  return first === undefined ? '' : first.path.replace(/^\/|\/[^/]*$/g, '');
}

/**
 * grpc.health.v1.Health (grpc-health-check) for grpc_health_probe and gRPC load balancers: the
 * server ("") and each of `services` are SERVING while `notReadyReason` says nothing (the same
 * readiness as /readyz), NOT_SERVING otherwise. Returns what stops its refresh timer.
 */
export function addHealthService(server: Server, services: readonly string[], notReadyReason: () => string | undefined): () => void {
  const health = new HealthImplementation();
  const refresh = (): void => {
    const status: ServingStatus = notReadyReason() === undefined ? 'SERVING' : 'NOT_SERVING';
    for (const name of ['', ...services]) health.setStatus(name, status);
  };
  refresh();
  // Check asks readiness at the moment of the call; Watch streams are told of changes by the timer.
  health.addToServer({
    addService: (definition: ServiceDefinition, impl: UntypedServiceImplementation) => {
      const check = impl['check'] as (...args: unknown[]) => void;
      server.addService(definition, {
        ...impl,
        check: (...args: unknown[]) => {
          refresh();
          check(...args);
        },
      });
    },
  });
  const timer = setInterval(refresh, HEALTH_REFRESH_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/** Where the .proto sources of @airlock/proto are (the image copies them beside proto/gen). */
const PROTO_DIR = join(import.meta.dirname, '..', '..', '..', 'proto');

/**
 * gRPC server reflection (v1 and v1alpha, @grpc/reflection) describing the Airlock services in
 * `protoFiles` (paths under proto/), for grpcurl and the like. Off unless grpcReflection is on:
 * it tells anyone who can reach the port the whole API.
 */
export function addReflectionService(server: Server, protoFiles: readonly string[]): void {
  let definition: PackageDefinition;
  try {
    definition = loadSync([...protoFiles], { includeDirs: [PROTO_DIR], keepCase: true });
  } catch (err) {
    throw new AirlockError(ErrorCode.Config, `grpcReflection is on but the .proto sources cannot be read from ${PROTO_DIR}: ${errorMessage(err)}`, { cause: err });
  }
  new ReflectionService(definition).addToServer(server);
}
