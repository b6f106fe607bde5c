import { createServer, type Server, type Socket } from 'node:net';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { errorReply } from '../http/errors.ts';
import { countLimitRefusals, DEFAULT_LISTENER_LIMITS } from '../http/listener-limits.ts';
import { requestRecorder, type Outcome } from '../telemetry/metrics.ts';
import { readClientHello } from './client-hello.ts';
import { createOutboundServer, tunnel, type OutboundDeps } from './outbound-server.ts';
import { parseAuthorityTarget } from './proxy-target.ts';

const TLS_HANDSHAKE = 0x16;

/**
 * Transparent mode's capture listener (`captureListen`; 127.0.0.1:15002 in injected pods), where
 * the init container's iptables rules send every outbound TCP connection of the app. Node cannot
 * read a redirected connection's original destination (SO_ORIGINAL_DST), so the connection's own
 * words name it, and that name is what is judged and dialled:
 * - TLS (first byte 0x16): the ClientHello's SNI, read without terminating TLS, judged and tunnelled
 *   exactly as `CONNECT <SNI>:443` (a mesh host is refused: the app's own TLS would pass by the
 *   mTLS the sidecar adds; the proxy's CONNECT to it is served as HTTP instead); no SNI, no call;
 *   under tls: inspect its TLS is terminated and each request judged, as for an inspected CONNECT;
 * - anything else: the outbound HTTP server in `capture` mode, the proxy's one decision and
 *   forwarding path, which routes an origin-form request by its Host; what is not HTTP/1.x is a 400.
 *
 * A listener of its own rather than the proxy port, because:
 * - on the proxy port (HTTP_PROXY) the app chose to talk to the sidecar: an origin-form request
 *   there comes from a client that thinks it talks to the origin (misconfigured, or a loopback URL
 *   chosen by an attacker through SSRF, NO_PROXY being loopback), and routing it by its Host would
 *   silently send its request, credentials and all, wherever that Host says; it stays a 400. Here a
 *   connection arrives only because the kernel took it from its destination, and the Host (or SNI)
 *   is the one name left;
 * - a pod without transparent mode runs no listener that routes by Host or peeks at TLS (the
 *   setting is unset unless the injector turns transparent mode on), and the proxy port's parsing
 *   is unchanged.
 * Any process of the pod may connect here directly: it gains nothing over the proxy port, since the
 * same decision judges the same name, which is then the one dialled.
 */
export function createCaptureServer(deps: OutboundDeps): Server & { closeAllConnections(): void } {
  const http = createOutboundServer(deps, 'capture');
  const recorder = requestRecorder(deps.metrics, 'outbound');
  const sockets = new Set<Socket>();
  const limits = deps.limits ?? DEFAULT_LISTENER_LIMITS;
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => socket.destroy());
    // What a captured connection sends first (a ClientHello, a request line) must be whole within
    // headersTimeout of its accept: a deadline, not an idle timer, which a byte now and then resets.
    const firstBytes = setTimeout(() => {
      deps.metrics.connectionsRefused.inc({ listener: 'capture', reason: 'request_timeout' });
      socket.destroy();
    }, limits.headersTimeoutMs);
    socket.on('close', () => {
      sockets.delete(socket);
      clearTimeout(firstBytes);
    });
    const chunks: Buffer[] = [];
    let size = 0;
    // Bytes that must arrive before the ClientHello is read again (a slow sender costs no re-reading).
    let need = 1;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      size += chunk.length;
      if (size < need) return;
      const received = Buffer.concat(chunks);
      chunks.splice(0, chunks.length, received);
      if (received[0] !== TLS_HANDSHAKE) {
        handOver(socket, received);
        return;
      }
      const hello = readClientHello(received);
      if (hello.state === 'more') {
        need = hello.need;
        return;
      }
      handOver(socket);
      const startedAt = recorder.start();
      judgeTls(hello, socket, received).then(
        // An inspected connection is not counted: each request in it is.
        (served) => {
          if (served === 'tunnel') recorder.finish(startedAt, 'allowed');
        },
        (err: unknown) => {
          const reply = errorReply(err, deps.logger);
          // A TLS client reads no HTTP: a fatal alert is the refusal it can report.
          socket.end(tlsAlert(reply.outcome));
          recorder.finish(startedAt, reply.outcome);
        },
      );
    };
    socket.on('data', onData);

    /** Stops peeking; with `http`, gives the connection (and what it sent) to the HTTP server. */
    function handOver(s: Socket, http?: Buffer): void {
      s.off('data', onData);
      s.pause();
      clearTimeout(firstBytes);
      if (http === undefined) return;
      s.unshift(http);
      toHttp(s);
    }
  });

  function toHttp(socket: Socket): void {
    http.emit('connection', socket);
    process.nextTick(() => socket.resume());
  }

  async function judgeTls(hello: ReturnType<typeof readClientHello>, socket: Socket, received: Buffer): Promise<'http' | 'tunnel'> {
    if (hello.state === 'invalid') throw new AirlockError(ErrorCode.BadRequest, `captured TLS connection: ${hello.reason}`);
    if (hello.state !== 'done' || hello.serverName === undefined) throw new AirlockError(ErrorCode.BadRequest, 'captured TLS connection without a server name (SNI): its destination is unknown');
    // The port the app dialled is lost with the original destination: TLS is judged and dialled on 443.
    const target = parseAuthorityTarget(`${hello.serverName}:443`);
    // The ClientHello goes first; nothing is said to the client, which speaks TLS to the destination.
    return tunnel(deps, target, [], socket, received, () => undefined, (t, client, head) => http.inspect(t, client, head));
  }

  // node:http checks request and header timeouts once its server is listening; this one never
  // listens itself, the capture listener does for it.
  server.on('listening', () => http.emit('listening'));
  server.on('close', () => {
    http.close();
    http.closeAllConnections();
  });
  countLimitRefusals(server, limits, 'capture', deps.metrics);
  return Object.assign(server, {
    closeAllConnections(): void {
      http.closeAllConnections();
      for (const s of sockets) s.destroy();
    },
  });
}

/** A fatal TLS alert record (RFC 8446 §6): access_denied for a denial, unrecognized_name for no usable SNI, internal_error else. */
function tlsAlert(outcome: Outcome): Buffer {
  const description = outcome === 'denied' || outcome === 'rate_limited' ? 49 : outcome === 'bad_request' ? 112 : 80;
  return Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]);
}

