import type { Server as NetServer } from 'node:net';
import type { Server as TlsServer, TLSSocket } from 'node:tls';

/**
 * What a client may hold on a listener: a slow or idle client is cut in seconds, not minutes, and a
 * flood of connections is refused past a cap rather than exhausting descriptors. The sidecar's
 * listeners (settings maxConnections, headersTimeout, requestTimeout, tlsHandshakeTimeout,
 * tunnelIdleTimeout) and the control plane's (the same names) take them from their config.
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

/** Why a listener's limit cut a client (a bounded label value). */
export type LimitRefusal = 'max_connections' | 'client_connections' | 'request_timeout' | 'handshake_timeout';

/**
 * node:http(s) options for these limits, set at creation. Node checks its header and request
 * timers only every `connectionsCheckingInterval` (30 s by default): checked more often here, so a
 * timeout holds within a fraction of itself.
 */
export function httpServerOptions(l: Pick<ListenerLimits, 'headersTimeoutMs' | 'requestTimeoutMs'>): { headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number } {
  // Node requires requestTimeout ≥ headersTimeout (0 = none).
  const requestTimeout = Math.max(l.requestTimeoutMs, l.headersTimeoutMs);
  return { headersTimeout: l.headersTimeoutMs, requestTimeout, connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(l.headersTimeoutMs / 4))) };
}

/**
 * Caps an HTTP/1 listener's open connections (each one past the cap is closed at once) and reports
 * what its limits refuse: connections past the cap, requests whose headers or body came too late
 * (Node answers those 408: answerClientErrors), TLS handshakes not finished in time.
 */
export function enforceListenerLimits(server: NetServer, maxConnections: number, refused: (reason: LimitRefusal) => void): void {
  capConnections(server, maxConnections, refused);
  server.on('clientError', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') refused('request_timeout');
  });
}

/**
 * The cap and the handshake count alone, for a listener that is not HTTP/1 (gRPC's HTTP/2: a
 * 'clientError' listener there would keep http2 from closing a socket whose handshake failed).
 */
export function capConnections(server: NetServer, maxConnections: number, refused: (reason: LimitRefusal) => void): void {
  server.maxConnections = maxConnections;
  server.on('drop', () => refused('max_connections'));
  server.on('tlsClientError', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') refused('handshake_timeout');
  });
}

/**
 * Caps the connections one client holds at once on a TLS listener, so that one client (a compromised
 * pod with a genuine certificate) cannot take the whole `maxConnections` and lock every other client
 * out. `clientOf` names the client of a connection once its handshake is done: from its verified
 * identity, never from what an unverified certificate claims (that would let anyone spend another's
 * share). Past the cap the connection is closed at once and counted as `client_connections`.
 */
export function capConnectionsPerClient(server: TlsServer, maxPerClient: number, clientOf: (socket: TLSSocket) => string, refused: (reason: LimitRefusal) => void): void {
  const open = new Map<string, number>();
  server.on('secureConnection', (socket: TLSSocket) => {
    const client = clientOf(socket);
    const held = open.get(client) ?? 0;
    if (held >= maxPerClient) {
      refused('client_connections');
      socket.destroy();
      return;
    }
    open.set(client, held + 1);
    socket.once('close', () => {
      const left = (open.get(client) ?? 1) - 1;
      if (left <= 0) open.delete(client);
      else open.set(client, left);
    });
  });
}
