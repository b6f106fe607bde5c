// gRPC clients of the standard services (health, reflection) from their published .proto files, as
// a load balancer or grpcurl would load them, over TLS without a client certificate.
import { join } from 'node:path';
import { Client, Metadata, loadPackageDefinition, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { CLIENT_OPTIONS, controlPlaneChannel } from '../../control-plane/src/testing/test-control-plane.ts';

export const HEALTH_PROTO = join(import.meta.dirname, '..', '..', 'node_modules', 'grpc-health-check', 'proto', 'health', 'v1', 'health.proto');
export const REFLECTION_PROTO = join(import.meta.dirname, '..', '..', 'node_modules', '@grpc', 'reflection', 'build', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');

export function serviceClient(proto: string, name: string, port: number, caPem: string): Client & Record<string, (...args: unknown[]) => unknown> {
  const pkg = loadPackageDefinition(loadSync(proto, { keepCase: true, enums: String, defaults: true }));
  const Ctor = name.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], pkg) as ServiceClientConstructor;
  // No client certificate: what grpc_health_probe -tls and a load balancer's health check present.
  return new Ctor(`127.0.0.1:${port}`, controlPlaneChannel(caPem), CLIENT_OPTIONS) as unknown as Client & Record<string, (...args: unknown[]) => unknown>;
}

export function healthCheck(client: Client & Record<string, (...args: unknown[]) => unknown>, service: string): Promise<string> {
  return new Promise((resolve) => {
    client['check']?.({ service }, new Metadata(), { deadline: Date.now() + 5000 }, (err: { code: number; details: string } | null, res: { status: string }) => resolve(err === null ? res.status : `error ${err.code}: ${err.details}`));
  });
}

