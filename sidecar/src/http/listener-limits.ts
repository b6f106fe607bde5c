import type { Server as NetServer } from 'node:net';
import { enforceListenerLimits, type ListenerLimits } from '@airlock/common/listener-limits';
import type { SidecarMetrics } from '../telemetry/metrics.ts';

export { DEFAULT_LISTENER_LIMITS, httpServerOptions, type ListenerLimits } from '@airlock/common/listener-limits';

/**
 * The sidecar listener's cap and what its limits refuse, counted in
 * airlock_sidecar_connections_refused_total (handshakes are counted by the inbound listener itself).
 */
export function countLimitRefusals(server: NetServer, l: ListenerLimits, listener: 'outbound' | 'inbound' | 'capture', metrics: SidecarMetrics): void {
  enforceListenerLimits(server, l.maxConnections, (reason) => {
    if (reason !== 'handshake_timeout') metrics.connectionsRefused.inc({ listener, reason });
  });
}
