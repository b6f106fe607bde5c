import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { formatHostPort } from '@airlock/common/config';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { TICKET_HEADER } from '@airlock/common/ticket';
import type { Logger } from '@airlock/common/logging';
import { answerClientErrors } from '@airlock/common/net';
import type { Authorizer, Upstream } from '../authz/authorizer.ts';
import { assertAllowed, errorReply, NotReadyError, sendErrorReply, sendErrorReplyOnSocket } from '../http/errors.ts';
import { forward } from '../http/forward.ts';
import { requestHeadersToForward, singleHostHeader } from '../http/headers.ts';
import type { Svid, SvidSource } from '../identity/svid.ts';
import { authzHeaders } from '../http/authz-headers.ts';
import { forwardToolsList } from '../mcp/forward-tools-list.ts';
import { DEFAULT_MCP_MAX_BODY_BYTES, readMcpRequest } from '../mcp/read-request.ts';
import { requestRecorder, type Outcome, type SidecarMetrics } from '../telemetry/metrics.ts';
import type { DestinationCheck } from './destination-check.ts';
import { assertHostMatches, parseAbsoluteTarget, parseAuthorityTarget, parseOriginTarget, type ProxyTarget } from './proxy-target.ts';
import type { UpstreamPools } from './upstream-pools.ts';

export interface OutboundDeps {
  readonly identity: SvidSource;
  readonly authorizer: Authorizer;
  /** mTLS pools to peer sidecars. */
  readonly meshPools: UpstreamPools;
  /** Plain HTTP to external hosts: an undici Agent made by externalAgent(destinations), which dials only checked addresses. */
  readonly external: Dispatcher;
  /** Resolves and checks every external destination before it is dialled (destination-check.ts). */
  readonly destinations: DestinationCheck;
  readonly metrics: SidecarMetrics;
  readonly logger: Logger;
  /** How much of a POST application/json body is read for MCP rules (default 64 KiB). */
  readonly mcpMaxBody?: number;
  /** Ports whose CONNECT tunnel is served as HTTP, whatever the host (default: 80). See openTunnel. */
  readonly plainHttpPorts?: ReadonlySet<number>;
}

const DEFAULT_PLAIN_HTTP_PORTS: ReadonlySet<number> = new Set([80]);

/**
 * `proxy`: the agent's HTTP proxy (HTTP_PROXY): absolute-form requests and CONNECT tunnels; an
 * origin-form request is refused. `capture`: the HTTP side of transparent mode's capture listener
 * (capture-server.ts), which also routes an origin-form request by its Host.
 */
export type OutboundMode = 'proxy' | 'capture';

/**
 * The agent's outbound HTTP server; one decision and forwarding path for both modes, and for the
 * requests inside a CONNECT tunnel served as HTTP (openTunnel), which a second HTTP server of the
 * same handler parses, each with its tunnel's CONNECT authority as the destination.
 */
export function createOutboundServer(deps: OutboundDeps, mode: OutboundMode = 'proxy'): Server {
  const tunnels = new WeakMap<Duplex, ProxyTarget>();
  const inTunnels = createHttpServer(deps, (req) => {
    const authority = tunnels.get(req.socket);
    if (authority === undefined) throw new AirlockError(ErrorCode.Internal, 'a tunnelled request without its tunnel');
    return tunnelTarget(authority, req);
  });
  const server = createHttpServer(deps, (req) => requestTarget(mode, req));
  const log = deps.logger;
  const recorder = requestRecorder(deps.metrics, 'outbound');
  const serveAsHttp = (target: ProxyTarget, socket: Duplex, head: Buffer): void => {
    // As an absolute-form URL names it (default port dropped): the Host sent on, as for `http://host/`.
    tunnels.set(socket, parseAbsoluteTarget(`http://${target.authority}/`));
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) socket.unshift(head);
    inTunnels.emit('connection', socket);
  };
  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const startedAt = recorder.start();
    socket.on('error', () => socket.destroy());
    openTunnel(deps, req, socket, head, serveAsHttp).then(
      // A tunnel served as HTTP is not counted: each request in it is.
      (served) => {
        if (served === 'tunnel') finish('allowed');
      },
      (err: unknown) => {
        const reply = errorReply(err, log);
        sendErrorReplyOnSocket(socket, reply);
        finish(reply.outcome);
      },
    );
    // For a tunnel, "duration" is the time until it is established (or refused).
    function finish(outcome: Outcome): void {
      recorder.finish(startedAt, outcome);
    }
  });
  // node:http checks request and header timeouts once its server is listening; the tunnels' server
  // never listens itself (as capture-server.ts's HTTP side).
  server.on('listening', () => inTunnels.emit('listening'));
  server.on('close', () => {
    inTunnels.close();
    inTunnels.closeAllConnections();
  });
  const closeAll = server.closeAllConnections.bind(server);
  server.closeAllConnections = () => {
    closeAll();
    inTunnels.closeAllConnections();
  };
  return server;
}

/** An HTTP server that authorizes and forwards each request to where `targetOf` says it goes. */
function createHttpServer(deps: OutboundDeps, targetOf: (req: IncomingMessage) => ProxyTarget): Server {
  const log = deps.logger;
  const recorder = requestRecorder(deps.metrics, 'outbound');
  // requireHostHeader: a missing Host is refused by singleHostHeader, with a JSON body.
  const server = createServer({ requireHostHeader: false }, (req, res) => {
    const startedAt = recorder.start();
    proxyRequest(deps, targetOf, req, res).then(
      (outcome) => finish(outcome),
      (err: unknown) => {
        const reply = errorReply(err, log);
        sendErrorReply(res, reply);
        finish(reply.outcome);
      },
    );
    function finish(outcome: Outcome): void {
      recorder.finish(startedAt, outcome);
    }
  });
  answerClientErrors(server, log);
  return server;
}

function requireSvid(identity: SvidSource): Svid {
  const svid = identity.current();
  if (svid === undefined) throw new NotReadyError();
  return svid;
}

/** accept → identify (ourselves) → authorize → forward (mTLS to a peer sidecar, or direct to an external host). */
async function proxyRequest(deps: OutboundDeps, targetOf: (req: IncomingMessage) => ProxyTarget, req: IncomingMessage, res: ServerResponse): Promise<Outcome> {
  const svid = requireSvid(deps.identity);
  const target = targetOf(req);
  const method = req.method ?? 'GET';
  const mcp = await readMcpRequest(req, deps.mcpMaxBody ?? DEFAULT_MCP_MAX_BODY_BYTES);
  const question = { direction: 'outbound', sourceId: svid.spiffeId, host: target.host, port: target.port, method, path: target.path, mcp: mcp.message, headers: authzHeaders(req.rawHeaders) } as const;
  const decision = await deps.authorizer.authorize(question);
  assertAllowed(decision);
  deps.logger.debug({ decisionId: decision.decisionId, host: target.host, method }, 'outbound call allowed');
  // The Host goes on as the agent named it (not the peer sidecar's address): the peer authorizes
  // on it too. For an absolute-form request that is the URL's authority (RFC 9112 §3.2.2).
  const headers = requestHeadersToForward(req.headers);
  headers.host = target.authority;
  // The peer sidecar admits the call on its ticket without asking again; only a mesh peer gets one (over mTLS).
  if (decision.upstream !== undefined && decision.ticket !== undefined) headers[TICKET_HEADER] = decision.ticket;
  const { dispatcher, origin, describe } = destination(deps, decision.upstream, svid, target);
  const body = mcp.body;
  const request = { origin, method, path: target.path, headers, describe, body };
  if (body instanceof Buffer && mcp.message !== undefined && 'method' in mcp.message && mcp.message.method === 'tools/list') {
    // The answer lists only the tools this agent may call: asked fresh, once, for the listed names.
    await forwardToolsList(dispatcher, { ...request, body }, res, async (names) => {
      const filter = await deps.authorizer.authorize({ ...question, listedTools: names });
      return new Set(filter.allowed ? filter.allowedTools : []);
    });
  } else {
    await forward(dispatcher, request, req, res);
  }
  return 'allowed';
}

/** Where the request asks to go: its absolute-form URL (Host must agree), or, captured, an origin-form request's Host. */
function requestTarget(mode: OutboundMode, req: IncomingMessage): ProxyTarget {
  const host = singleHostHeader(req);
  if (mode === 'capture' && req.url?.startsWith('/') === true) return parseOriginTarget(req.url, host);
  const target = parseAbsoluteTarget(req.url);
  assertHostMatches(target, host);
  return target;
}

/**
 * Where a request inside a tunnel served as HTTP goes: the CONNECT authority, always. Clients send
 * origin-form there (`GET /v1/search`); an absolute-form URL is read too, and must name the
 * tunnel's authority. A Host naming another authority is refused, as for an absolute-form request.
 */
function tunnelTarget(authority: ProxyTarget, req: IncomingMessage): ProxyTarget {
  const host = singleHostHeader(req);
  const url = req.url ?? '';
  const target = url.startsWith('/') ? { ...authority, path: parseOriginTarget(url, authority.authority).path } : parseAbsoluteTarget(url);
  if (target.host !== authority.host || target.port !== authority.port) {
    throw new AirlockError(ErrorCode.BadRequest, `the request names ${target.authority}, but its tunnel was opened to ${authority.authority}; they must agree`);
  }
  assertHostMatches(authority, host);
  return { ...authority, path: target.path };
}

/**
 * Where an allowed call goes: the peer sidecar named by the decision (over mTLS, at the address its
 * registration holds: not address-checked, see README "Destinations checked by address"), or the
 * external host itself, through the Agent whose connector dials only checked addresses.
 */
function destination(deps: OutboundDeps, upstream: Upstream | undefined, svid: Svid, target: ProxyTarget): { dispatcher: Dispatcher; origin: string | undefined; describe: string } {
  if (upstream !== undefined) return { dispatcher: deps.meshPools.get(upstream, svid), origin: undefined, describe: `peer ${upstream.spiffeId} at ${upstream.address}` };
  const origin = `http://${formatHostPort(target)}`;
  return { dispatcher: deps.external, origin, describe: origin };
}

/**
 * `CONNECT host:port`. Node's fetch (NODE_USE_ENV_PROXY) and undici 7's ProxyAgent send even
 * `http://researcher.demo/` as `CONNECT researcher.demo:80`, then plain HTTP inside. Such a tunnel
 * is answered 200 and served as HTTP: each request in it is authorized and forwarded as an
 * absolute-form request to the CONNECT authority would be (to a mesh peer over mTLS, to an
 * external host directly), so path, method, header and MCP rules apply to every one.
 * - A port of plainHttpPorts (80 by default) is served as HTTP at once, without a decision on the
 *   CONNECT: nothing goes anywhere before a request inside is allowed, and a denied one gets its
 *   403 JSON on that request, where a fetch caller reads it (a refused CONNECT reaches the caller
 *   only as "fetch failed"). It is a sidecar setting, not a policy marker: it must be known before
 *   any request exists, it is a fact of the agent's traffic rather than of whom it may call, and it
 *   widens nothing (every request is still judged as it would be sent in absolute form).
 * - Any other port: the CONNECT is judged on host and port; allowed to a mesh host, it is served
 *   as HTTP (a blind tunnel would carry the agent's own TLS past the mTLS identity the sidecar
 *   adds), else it is a blind tunnel to the external host.
 */
async function openTunnel(deps: OutboundDeps, req: IncomingMessage, client: Duplex, head: Buffer, serveAsHttp: (target: ProxyTarget, client: Duplex, head: Buffer) => void): Promise<'http' | 'tunnel'> {
  const target = parseAuthorityTarget(req.url);
  singleHostHeader(req); // a CONNECT's Host is not used, but none (HTTP/1.1) or two are refused all the same
  if ((deps.plainHttpPorts ?? DEFAULT_PLAIN_HTTP_PORTS).has(target.port)) {
    requireSvid(deps.identity);
    serveAsHttp(target, client, head);
    return 'http';
  }
  const decision = await authorizeTunnel(deps, target, req.rawHeaders);
  if (decision.upstream !== undefined) {
    serveAsHttp(target, client, head);
    return 'http';
  }
  await connectTunnel(deps, decision.decisionId, target, client, head, () => client.write('HTTP/1.1 200 Connection Established\r\n\r\n'));
  return 'tunnel';
}

async function authorizeTunnel(deps: OutboundDeps, target: ProxyTarget, rawHeaders: readonly string[]): Promise<{ upstream: Upstream | undefined; decisionId: string }> {
  const svid = requireSvid(deps.identity);
  const decision = await deps.authorizer.authorize({ direction: 'outbound', sourceId: svid.spiffeId, host: target.host, port: target.port, method: 'CONNECT', path: '', headers: authzHeaders(rawHeaders) });
  assertAllowed(decision);
  return decision;
}

/**
 * accept → identify → authorize → tunnel to an external host: a CONNECT, or a captured TLS
 * connection judged as `CONNECT <SNI>:443` (capture-server.ts). `established` tells the client
 * once the destination is connected; `head` is what the client sent ahead, written first.
 */
export async function tunnel(deps: OutboundDeps, target: ProxyTarget, rawHeaders: readonly string[], client: Duplex, head: Buffer, established: () => void): Promise<void> {
  const decision = await authorizeTunnel(deps, target, rawHeaders);
  if (decision.upstream !== undefined) {
    // A tunnel would carry the agent's own TLS, bypassing the mTLS identity the sidecar adds.
    throw new AirlockError(ErrorCode.BadRequest, `${target.host} is a mesh host: send plain http://${formatHostPort(target)}/… through this proxy; the sidecar adds mTLS`);
  }
  await connectTunnel(deps, decision.decisionId, target, client, head, established);
}

async function connectTunnel(deps: OutboundDeps, decisionId: string, target: ProxyTarget, client: Duplex, head: Buffer, established: () => void): Promise<void> {
  const { socket: upstream, address } = await deps.destinations.connect(target);
  deps.logger.info({ decisionId, host: target.host, port: target.port, address }, 'tunnel opened');
  established();
  if (head.length > 0) upstream.write(head);
  upstream.on('error', () => client.destroy());
  client.on('error', () => upstream.destroy());
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
  upstream.pipe(client);
  client.pipe(upstream);
}
