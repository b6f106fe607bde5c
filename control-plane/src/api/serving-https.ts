import { createServer, type Server, type ServerOptions } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ListenAddress, TlsMinVersion } from '@airlock/common/config';
import { enforceListenerLimits, httpServerOptions, type LimitRefusal, type ListenerLimits } from '@airlock/common/listener-limits';
import { answerClientErrors, boundPort, closeServer, listen } from '@airlock/common/net';

type IdentityUpdate = { certificate: Buffer; privateKey: Buffer } | null;

/** The control plane's serving certificate and its renewals (StaticCertificateProvider: the one gRPC serves). */
export interface ServingCertificates {
  addIdentityCertificateListener(listener: (update: IdentityUpdate) => void): void;
  removeIdentityCertificateListener(listener: (update: IdentityUpdate) => void): void;
}

export interface ServingHttpsOptions {
  readonly address: ListenAddress;
  readonly certificates: ServingCertificates;
  readonly tlsMinVersion: TlsMinVersion;
  readonly handler: (req: IncomingMessage, res: ServerResponse) => void;
  readonly limits: Pick<ListenerLimits, 'maxConnections' | 'headersTimeoutMs' | 'requestTimeoutMs' | 'tlsHandshakeTimeoutMs'>;
  /** Each connection the limits cut (to count it). */
  readonly refused?: (reason: LimitRefusal) => void;
}

export interface ServingHttpsServer {
  readonly server: Server;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * An HTTPS listener of the control plane (the admin API, the injection webhook): the serving
 * certificate gRPC presents, the tlsMinVersion floor, a renewed certificate for new handshakes at
 * once (open connections finish on theirs), Node's parser refusals answered as JSON, and `limits`.
 */
export async function listenWithServingCertificate(o: ServingHttpsOptions): Promise<ServingHttpsServer> {
  const tls = (u: { certificate: Buffer; privateKey: Buffer }): Pick<ServerOptions, 'cert' | 'key' | 'minVersion'> => ({ cert: u.certificate, key: u.privateKey, minVersion: o.tlsMinVersion });
  const first = await new Promise<{ certificate: Buffer; privateKey: Buffer }>((resolve) => {
    const once = (u: IdentityUpdate): void => {
      if (u === null) return;
      o.certificates.removeIdentityCertificateListener(once);
      resolve(u);
    };
    o.certificates.addIdentityCertificateListener(once);
  });
  const server = createServer({ ...tls(first), ...httpServerOptions(o.limits), handshakeTimeout: o.limits.tlsHandshakeTimeoutMs }, o.handler);
  enforceListenerLimits(server, o.limits.maxConnections, o.refused ?? (() => undefined));
  answerClientErrors(server);
  const renewed = (u: IdentityUpdate): void => {
    if (u !== null) server.setSecureContext(tls(u));
  };
  o.certificates.addIdentityCertificateListener(renewed);
  try {
    await listen(server, o.address);
  } catch (err) {
    o.certificates.removeIdentityCertificateListener(renewed);
    throw err;
  }
  return {
    server,
    port: boundPort(server),
    close: () => {
      o.certificates.removeIdentityCertificateListener(renewed);
      return closeServer(server);
    },
  };
}
