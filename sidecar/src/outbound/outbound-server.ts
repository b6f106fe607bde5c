import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { formatHostPort } from '@airlock/common/config';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import type { Authorizer } from '../authz/authorizer.ts';
import { assertAllowed, errorReply, NotReadyError, sendErrorReply, sendErrorReplyOnSocket } from '../http/errors.ts';
import { forward } from '../http/forward.ts';
import { requestHeadersToForward } from '../http/headers.ts';
import type { Svid, SvidSource } from '../identity/svid.ts';
import type { Outcome, SidecarMetrics } from '../telemetry/metrics.ts';
import { parseAbsoluteTarget, parseAuthorityTarget } from './proxy-target.ts';
import type { UpstreamPools } from './upstream-pools.ts';

export interface OutboundDeps {
  readonly identity: SvidSource;
  readonly authorizer: Authorizer;
  /** mTLS pools to peer sidecars. */
  readonly meshPools: UpstreamPools;
  /** Plain HTTP to external hosts (an undici Agent). */
  readonly external: Dispatcher;
  readonly metrics: SidecarMetrics;
  readonly logger: Logger;
}

/** The agent's HTTP proxy (HTTP_PROXY): absolute-form requests and CONNECT tunnels. */
export function createOutboundServer(deps: OutboundDeps): Server {
  const log = deps.logger;
  const server = createServer((req, res) => {
    const end = deps.metrics.requestDuration.startTimer({ direction: 'outbound' });
    proxyRequest(deps, req, res).then(
      (outcome) => finish(outcome),
      (err: unknown) => {
        const reply = errorReply(err, log);
        sendErrorReply(res, reply);
        finish(reply.outcome);
      },
    );
    function finish(outcome: Outcome): void {
      end();
      deps.metrics.requests.inc({ direction: 'outbound', outcome });
    }
  });
  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const end = deps.metrics.requestDuration.startTimer({ direction: 'outbound' });
    socket.on('error', () => socket.destroy());
    openTunnel(deps, req, socket, head).then(
      () => finish('allowed'),
      (err: unknown) => {
        const reply = errorReply(err, log);
        sendErrorReplyOnSocket(socket, reply);
        finish(reply.outcome);
      },
    );
    // For a tunnel, "duration" is the time until it is established (or refused).
    function finish(outcome: Outcome): void {
      end();
      deps.metrics.requests.inc({ direction: 'outbound', outcome });
    }
  });
  return server;
}

function requireSvid(identity: SvidSource): Svid {
  const svid = identity.current();
  if (svid === undefined) throw new NotReadyError();
  return svid;
}

/** accept → identify (ourselves) → authorize → forward (mTLS to a peer sidecar, or direct to an external host). */
async function proxyRequest(deps: OutboundDeps, req: IncomingMessage, res: ServerResponse): Promise<Outcome> {
  const svid = requireSvid(deps.identity);
  const target = parseAbsoluteTarget(req.url);
  const method = req.method ?? 'GET';
  const decision = await deps.authorizer.authorize({ direction: 'outbound', sourceId: svid.spiffeId, host: target.host, port: target.port, method, path: target.path });
  assertAllowed(decision);
  deps.logger.debug({ decisionId: decision.decisionId, host: target.host, method }, 'outbound call allowed');
  // The Host goes on as the agent named it (not the peer sidecar's address): the peer authorizes
  // on it too. For an absolute-form request that is the URL's authority (RFC 9112 §3.2.2).
  const headers = requestHeadersToForward(req.headers);
  headers.host = target.authority;
  if (decision.upstream !== undefined) {
    const pool = deps.meshPools.get(decision.upstream, svid);
    await forward(pool, { method, path: target.path, headers, describe: `peer ${decision.upstream.spiffeId} at ${decision.upstream.address}` }, req, res);
  } else {
    const origin = `http://${formatHostPort(target)}`;
    await forward(deps.external, { origin, method, path: target.path, headers, describe: origin }, req, res);
  }
  return 'allowed';
}

/** accept → identify → authorize → tunnel, for `CONNECT host:port` to an external host. */
async function openTunnel(deps: OutboundDeps, req: IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
  const svid = requireSvid(deps.identity);
  const target = parseAuthorityTarget(req.url);
  const decision = await deps.authorizer.authorize({ direction: 'outbound', sourceId: svid.spiffeId, host: target.host, port: target.port, method: 'CONNECT', path: '' });
  assertAllowed(decision);
  if (decision.upstream !== undefined) {
    // A tunnel would carry the agent's own TLS, bypassing the mTLS identity the sidecar adds.
    throw new AirlockError(ErrorCode.BadRequest, `${target.host} is a mesh host: send plain http://${formatHostPort(target)}/… through this proxy; the sidecar adds mTLS`);
  }
  const upstream = await dial(target.host, target.port);
  client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  if (head.length > 0) upstream.write(head);
  upstream.on('error', () => client.destroy());
  client.on('error', () => upstream.destroy());
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
  upstream.pipe(client);
  client.pipe(upstream);
}

function dial(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(socket);
    });
    const onError = (err: Error): void => {
      reject(new AirlockError(ErrorCode.UpstreamUnavailable, `cannot reach ${formatHostPort({ host, port })}: ${err.message}`, { cause: err }));
    };
    socket.once('error', onError);
  });
}
