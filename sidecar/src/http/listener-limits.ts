import type { Server as NetServer } from 'node:net';
import type { SidecarMetrics } from '../telemetry/metrics.ts';

/**
 * What a client may hold on a sidecar listener (settings maxConnections, headersTimeout,
 * requestTimeout, tlsHandshakeTimeout, tunnelIdleTimeout): a slow or idle client is cut in seconds,
 * not minutes, and a flood of connections is refused past a cap rather than exhausting descriptors.
 */
export interface ListenerLimits {
  readonly maxConnections: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly tlsHandshakeTimeoutMs: number;
  readonly tunnelIdleTimeoutMs: number;
}

export const DEFAULT_LISTENER_LIMITS: ListenerLimits = {
  maxConnections: 10_000,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  tlsHandshakeTimeoutMs: 10_000,
  tunnelIdleTimeoutMs: 300_000,
};

/**
 * node:http(s) options for these limits, set at creation. Node checks its header and request
 * timers only every `connectionsCheckingInterval` (30 s by default): checked more often here, so a
 * timeout holds within a fraction of itself.
 */
export function httpServerOptions(l: ListenerLimits): { headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number } {
  // Node requires requestTimeout ≥ headersTimeout (0 = none).
  const requestTimeout = Math.max(l.requestTimeoutMs, l.headersTimeoutMs);
  return { headersTimeout: l.headersTimeoutMs, requestTimeout, connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(l.headersTimeoutMs / 4))) };
}

/**
 * Caps a listener's open connections (each one past the cap is closed at once) and counts what its
 * limits refuse: connections past the cap, and requests whose headers or body came too late (Node
 * answers those 408: answerClientErrors).
 */
export function countLimitRefusals(server: NetServer, l: ListenerLimits, listener: 'outbound' | 'inbound' | 'capture', metrics: SidecarMetrics): void {
  server.maxConnections = l.maxConnections;
  server.on('drop', () => metrics.connectionsRefused.inc({ listener, reason: 'max_connections' }));
  server.on('clientError', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') metrics.connectionsRefused.inc({ listener, reason: 'request_timeout' });
  });
}
