import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { ListenAddress } from '@airlock/common/config';
import { answerClientErrors } from '@airlock/common/net';
import { startAdminServer, type ListenerGuard } from '@airlock/common/telemetry';

/** /metrics, /healthz, and /readyz, which stays "not ready" until a valid SVID is held; within `guard`'s limits. */
export async function startSidecarAdmin(address: ListenAddress, registry: Registry, notReadyReason: () => string | undefined, guard?: ListenerGuard): Promise<Server> {
  const server = await startAdminServer(address, registry, { healthy: () => true, notReadyReason }, [], guard);
  answerClientErrors(server);
  return server;
}
