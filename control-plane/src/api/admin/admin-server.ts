import { createServer as createHttpServer } from 'node:http';
import type { ListenAddress, TlsMinVersion } from '@airlock/common/config';
import { enforceListenerLimits, httpServerOptions, type LimitRefusal, type ListenerLimits } from '@airlock/common/listener-limits';
import { answerClientErrors, boundPort, closeServer, listen } from '@airlock/common/net';
import { routeRequests, sendJson, type AdminRoute } from '@airlock/common/telemetry';
import type { ControlPlaneConfig } from '../../config/config.ts';
import { listenWithServingCertificate, type ServingCertificates } from '../serving-https.ts';

export interface AdminApiServerOptions {
  readonly address: ListenAddress;
  readonly transport: ControlPlaneConfig['adminTransport'];
  /** The same floor as every TLS listener of the control plane (tlsMinVersion). */
  readonly tlsMinVersion: TlsMinVersion;
  /** The serving certificate and its renewals (the provider gRPC serves from: one certificate, one rotation). */
  readonly certificates: ServingCertificates;
  readonly routes: readonly AdminRoute[];
  readonly limits: Pick<ListenerLimits, 'maxConnections' | 'headersTimeoutMs' | 'requestTimeoutMs' | 'tlsHandshakeTimeoutMs'>;
  readonly refused: (reason: LimitRefusal) => void;
}

export interface AdminApiServer {
  readonly port: number;
  /** `https` unless adminTransport is a plain one. */
  readonly scheme: 'https' | 'http';
  close(): Promise<void>;
}

/** The admin JSON API's own listener: HTTPS with the control plane's certificate, or plain HTTP when configured so. */
export async function startAdminApiServer(o: AdminApiServerOptions): Promise<AdminApiServer> {
  const handler = routeRequests(o.routes);
  if (o.transport !== 'tls') {
    const server = createHttpServer(httpServerOptions(o.limits), handler);
    enforceListenerLimits(server, o.limits.maxConnections, o.refused);
    answerClientErrors(server);
    await listen(server, o.address);
    return { port: boundPort(server), scheme: 'http', close: () => closeServer(server) };
  }
  const running = await listenWithServingCertificate({ address: o.address, certificates: o.certificates, tlsMinVersion: o.tlsMinVersion, handler, limits: o.limits, refused: o.refused });
  return { port: running.port, scheme: 'https', close: () => running.close() };
}

/**
 * On the plain monitoring listener, `/v1/` is not served (a bearer token sent there has crossed the
 * network in clear text already); the answer says where the admin API is instead.
 */
export function adminApiElsewhereRoute(admin: Pick<AdminApiServer, 'port' | 'scheme'>): AdminRoute {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path !== '/v1' && !path.startsWith('/v1/')) return false;
    sendJson(res, 404, { error: 'not_found', reason: `the admin API is not served on this port: it is on port ${admin.port} over ${admin.scheme} (adminListen)` });
    return true;
  };
}
