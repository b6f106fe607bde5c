import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { experimental } from '@grpc/grpc-js';
import type { ListenAddress, TlsMinVersion } from '@airlock/common/config';
import { answerClientErrors, boundPort, closeServer, listen } from '@airlock/common/net';
import { routeRequests, sendJson, type AdminRoute } from '@airlock/common/telemetry';
import type { ControlPlaneConfig } from '../config/config.ts';
import type { StaticCertificateProvider } from './certificate-provider.ts';

export interface AdminApiServerOptions {
  readonly address: ListenAddress;
  readonly transport: ControlPlaneConfig['adminTransport'];
  /** The same floor as every TLS listener of the control plane (tlsMinVersion). */
  readonly tlsMinVersion: TlsMinVersion;
  /** The control plane's serving certificate now (chain and key, PEM)... */
  readonly identity: { readonly certPem: string; readonly keyPem: string };
  /** ...and where its renewals arrive (the same provider gRPC serves from: one certificate, one rotation). */
  readonly certificates: StaticCertificateProvider;
  readonly routes: readonly AdminRoute[];
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
    const server = createHttpServer(handler);
    answerClientErrors(server);
    await listen(server, o.address);
    return { port: boundPort(server), scheme: 'http', close: () => closeServer(server) };
  }
  const server = createHttpsServer({ cert: o.identity.certPem, key: o.identity.keyPem, minVersion: o.tlsMinVersion }, handler);
  answerClientErrors(server);
  // New handshakes take a renewed certificate at once; connections already open finish on theirs.
  const renewed: experimental.IdentityCertificateUpdateListener = (update) => {
    if (update !== null) server.setSecureContext({ cert: update.certificate, key: update.privateKey, minVersion: o.tlsMinVersion });
  };
  o.certificates.addIdentityCertificateListener(renewed);
  try {
    await listen(server, o.address);
  } catch (err) {
    o.certificates.removeIdentityCertificateListener(renewed);
    throw err;
  }
  return {
    port: boundPort(server),
    scheme: 'https',
    close: () => {
      o.certificates.removeIdentityCertificateListener(renewed);
      return closeServer(server);
    },
  };
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
