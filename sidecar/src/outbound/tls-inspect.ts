import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { Logger } from '@airlock/common/logging';
import type { SidecarMetrics } from '../telemetry/metrics.ts';
import type { EgressCa } from './egress-ca.ts';
import type { ProxyTarget } from './proxy-target.ts';

/** How long the agent may take to finish its TLS handshake once its CONNECT is answered. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

export interface InspectDeps {
  readonly egressCa: EgressCa;
  readonly metrics: SidecarMetrics;
  readonly logger: Logger;
}

/**
 * Terminates the agent's TLS inside an allowed CONNECT (tls: inspect): the sidecar answers the
 * handshake with a leaf certificate for the CONNECT host, minted by its egress CA, offering ALPN
 * http/1.1 only, and hands the decrypted stream to `serve` once the handshake is done.
 * - The SNI must be the CONNECT host (for a name; none, or the same, for an IP literal): a
 *   ClientHello naming another host, or none for a name, gets no certificate and the handshake
 *   fails, so a tunnel opened (and judged) for one name never carries a conversation meant for another.
 * - An agent that does not trust the egress CA aborts the handshake itself (its TLS library says
 *   why: "unable to get local issuer certificate" and the like); the tunnel is closed, never left
 *   hanging; one that says nothing is closed after HANDSHAKE_TIMEOUT_MS.
 */
export function inspectTunnel(deps: InspectDeps, target: ProxyTarget, client: Duplex, head: Buffer, serve: (tls: TLSSocket) => void): void {
  const name = target.host.toLowerCase();
  const isName = isIP(name) === 0;
  let result: 'inspected' | 'sni_mismatch' | undefined;
  if (head.length > 0) client.unshift(head);
  const tls = new TLSSocket(client, {
    isServer: true,
    ALPNProtocols: ['http/1.1'],
    // For a name, no default certificate: without an SNI naming it, the handshake fails.
    ...(isName ? {} : { secureContext: deps.egressCa.contextFor(name) }),
    SNICallback: (servername, callback) => {
      if (servername.toLowerCase() === name) {
        callback(null, deps.egressCa.contextFor(name));
        return;
      }
      result = 'sni_mismatch';
      deps.metrics.egressInspected.inc({ result });
      deps.logger.warn({ host: target.host, port: target.port, sni: servername.slice(0, 253) }, 'inspected tunnel refused: its TLS names another host than its CONNECT');
      callback(new Error(`the TLS server name "${servername.slice(0, 253)}" is not the CONNECT host ${target.host}`), undefined);
    },
  });
  tls.setTimeout(HANDSHAKE_TIMEOUT_MS, () => tls.destroy());
  tls.on('error', (err: Error) => {
    if (result === undefined) deps.logger.info({ host: target.host, port: target.port, reason: err.message }, "inspected tunnel: the agent's TLS handshake failed");
    tls.destroy();
  });
  // The proxy's sockets allow half-open connections: an agent that gives up mid-handshake (it sends
  // its alert, then FIN) would otherwise leave the tunnel open on this side.
  tls.on('end', () => {
    if (result === undefined) tls.destroy();
  });
  tls.on('close', () => {
    client.destroy();
    if (result === undefined) deps.metrics.egressInspected.inc({ result: 'handshake_failed' });
  });
  tls.once('secure', () => {
    result = 'inspected';
    tls.setTimeout(0);
    deps.metrics.egressInspected.inc({ result });
    serve(tls);
  });
}
