import type { Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { ListenAddress } from '@airlock/common/config';
import { startAdminServer } from '@airlock/common/telemetry';

/** /metrics, /healthz, and /readyz, which stays "not ready" until a valid SVID is held. */
export function startSidecarAdmin(address: ListenAddress, registry: Registry, notReadyReason: () => string | undefined): Promise<Server> {
  return startAdminServer(address, registry, { healthy: () => true, notReadyReason });
}
