import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { ListenAddress } from '@airlock/common/config';
import { answerClientErrors } from '@airlock/common/net';
import { startAdminServer } from '@airlock/common/telemetry';

/** /metrics, /healthz, and /readyz, which stays "not ready" until a valid SVID is held. */
export async function startSidecarAdmin(address: ListenAddress, registry: Registry, notReadyReason: () => string | undefined): Promise<Server> {
  const server = await startAdminServer(address, registry, { healthy: () => true, notReadyReason });
  answerClientErrors(server);
  return server;
}
