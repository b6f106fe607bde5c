import { isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { formatHostPort } from '@airlock/common/config';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';

export interface OriginationTrust {
  /** PEM bundle the destination's certificate must chain to (`egressTrustBundleFile`); undefined = Node's roots. */
  readonly ca?: string;
  /** Where the roots come from, for error messages. */
  readonly describe: string;
}

/**
 * TLS from the sidecar to an external host (tls: inspect or originate), over `socket`, a TCP
 * connection to an address the destination check allowed: SNI is the host name (none for an IP
 * literal), ALPN http/1.1, and the certificate must verify for that name against `trust`. A
 * certificate that does not is AIRLOCK_UPSTREAM_IDENTITY (a 502 naming why), a handshake not done within
 * `handshakeTimeoutMs` AIRLOCK_UPSTREAM_TIMEOUT (504): the call is never
 * sent in clear nor to an unverified peer instead.
 */
export function originateTls(socket: Socket, host: string, port: number, trust: OriginationTrust, handshakeTimeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const where = formatHostPort({ host, port });
    const tls = tlsConnect({
      socket,
      host,
      ...(isIP(host) === 0 ? { servername: host } : {}),
      ALPNProtocols: ['http/1.1'],
      rejectUnauthorized: true,
      ...(trust.ca === undefined ? {} : { ca: trust.ca }),
    });
    tls.setTimeout(handshakeTimeoutMs, () => tls.destroy(new HandshakeTimeout(`no TLS handshake within ${handshakeTimeoutMs} ms (upstreamConnectTimeout)`)));
    const onError = (err: Error): void => {
      tls.destroy();
      const code = (err as NodeJS.ErrnoException).code;
      if (err instanceof HandshakeTimeout) {
        reject(new AirlockError(ErrorCode.UpstreamTimeout, `TLS to ${where} failed: ${err.message}`, { cause: err }));
      } else if (code !== undefined && isVerificationFailure(code)) {
        reject(new AirlockError(ErrorCode.UpstreamIdentity, `${where} presented a certificate that does not verify for ${host} against ${trust.describe} (${code}: ${errorMessage(err)}); nothing was sent`, { cause: err }));
      } else {
        reject(new AirlockError(ErrorCode.UpstreamUnavailable, `TLS to ${where} failed: ${code === undefined ? '' : `${code} `}${errorMessage(err)}`, { cause: err }));
      }
    };
    tls.once('error', onError);
    tls.once('secureConnect', () => {
      tls.setTimeout(0);
      tls.off('error', onError);
      resolve(tls);
    });
  });
}

/** A destination that did not finish its TLS handshake within upstreamConnectTimeout. */
class HandshakeTimeout extends Error {}

/** OpenSSL's X509 verification errors and Node's name check: the destination did not prove who it is. */
function isVerificationFailure(code: string): boolean {
  return code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ISSUER|CHAIN|SIGNATURE_FAILURE/.test(code);
}
