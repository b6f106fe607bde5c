import { buildConnector } from 'undici';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import type { Upstream } from '../authz/authorizer.ts';

/** Errors of a connection to a peer sidecar that was cut, or answered with a TLS alert, during our handshake. */
const refusedHandshakes = new WeakSet<Error>();

/**
 * `connector` with its handshake refusals marked: a TCP connection that the peer closed or reset,
 * or answered with an alert, before the mTLS handshake finished. A peer sidecar does that while it
 * starts (it holds no SVID yet: inbound-server.ts). Not marked: a refused TCP connect (nobody
 * listens) and a certificate we refuse (its own message says why).
 */
export function markHandshakeRefusals(connector: buildConnector.connector): buildConnector.connector {
  return (options, callback) => {
    connector(options, (...args) => {
      const [err] = args;
      if (err !== null && err.name !== 'ConnectTimeoutError') {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        const syscall = (err as NodeJS.ErrnoException).syscall;
        if (code.startsWith('ERR_SSL_') || (syscall !== 'connect' && (code === 'ECONNRESET' || code === 'EPIPE'))) refusedHandshakes.add(err);
      }
      callback(...args);
    });
  };
}

/**
 * A peer sidecar that refused our handshake becomes one clean 502 reason. OpenSSL's own text
 * ("SSL routines", "ssl3_read_bytes", "alert handshake failure") says nothing to an agent and
 * describes our TLS stack: it goes to the debug log only. Any other error is returned as it is.
 */
export function peerHandshakeRefusal(err: unknown, upstream: Upstream, log: Logger): unknown {
  if (!(err instanceof AirlockError) || err.code !== ErrorCode.UpstreamUnavailable || !(err.cause instanceof Error) || !refusedHandshakes.has(err.cause)) return err;
  const cause = err.cause as NodeJS.ErrnoException;
  log.debug({ peer: upstream.spiffeId, address: upstream.address, code: cause.code, reason: errorMessage(cause) }, 'the peer sidecar refused the TLS handshake');
  return new AirlockError(ErrorCode.UpstreamUnavailable, `the peer sidecar at ${upstream.address} refused the TLS handshake (it may be starting)`, { cause });
}
