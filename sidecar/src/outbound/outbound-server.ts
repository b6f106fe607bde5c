import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { formatHostPort } from '@airlock/common/config';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { TICKET_HEADER } from '@airlock/common/ticket';
import { scanRequest, SECRET_SCAN_BODY_BYTES } from '@airlock/common/secret-detectors';
import type { Logger } from '@airlock/common/logging';
import { answerClientErrors } from '@airlock/common/net';
import { countLimitRefusals, DEFAULT_LISTENER_LIMITS, httpServerOptions, type ListenerLimits } from '../http/listener-limits.ts';
import type { Authorizer, AuthzRequest, Decision, TlsMode, Upstream } from '../authz/authorizer.ts';
import { assertAllowed, errorReply, jsonRpcTarget, NotReadyError, sendErrorReply, sendErrorReplyOnSocket, type JsonRpcTarget } from '../http/errors.ts';
import { forward } from '../http/forward.ts';
import { requestHeadersToForward, singleHostHeader } from '../http/headers.ts';
import type { Svid, SvidSource } from '../identity/svid.ts';
import { authzHeaders } from '../http/authz-headers.ts';
import { forwardToolsList } from '../mcp/forward-tools-list.ts';
import { DEFAULT_MCP_MAX_BODY_BYTES, readSkippedMcp, type McpRead } from '../mcp/read-request.ts';
import { authorizeReadingIfAsked, readCounted, type McpBodyCounter } from '../mcp/lazy-body.ts';
import type { McpBodyNeeds } from '../mcp/mcp-body-scope.ts';
import { requestRecorder, type Outcome, type SidecarMetrics } from '../telemetry/metrics.ts';
import type { DestinationCheck } from './destination-check.ts';
import { authorizeEgress, dialable, type Resolution } from './egress-ask.ts';
import type { EgressCa } from './egress-ca.ts';
import { assertHostMatches, inspectedTarget, parseAbsoluteTarget, parseAuthorityTarget, parseOriginTarget, type ProxyTarget } from './proxy-target.ts';
import { inspectTunnel } from './tls-inspect.ts';
import type { UpstreamPools } from './upstream-pools.ts';
import { peerHandshakeRefusal } from './peer-handshake.ts';

export interface OutboundDeps {
  readonly identity: SvidSource;
  readonly authorizer: Authorizer;
  /** mTLS pools to peer sidecars. */
  readonly meshPools: UpstreamPools;
  /** HTTP (and TLS, for tls: inspect/originate) to external hosts: an undici Agent made by externalAgent(destinations), which dials only checked addresses. */
  readonly external: Dispatcher;
  /** Resolves and checks every external destination before it is dialled (destination-check.ts). */
  readonly destinations: DestinationCheck;
  readonly metrics: SidecarMetrics;
  readonly logger: Logger;
  /** How much of a POST application/json body is read for MCP rules (default 64 KiB). */
  readonly mcpMaxBody?: number;
  /** Which destinations' bodies are read for MCP, as pushed; absent: every body. */
  readonly mcpBody?: McpBodyNeeds;
  readonly mcpBodies?: McpBodyCounter;
  /** Ports whose CONNECT tunnel is served as HTTP, whatever the host (default: 80). See openTunnel. */
  readonly plainHttpPorts?: ReadonlySet<number>;
  /** Mints the certificates a CONNECT under tls: inspect is answered with; undefined = such a CONNECT is refused. */
  readonly egressCa?: EgressCa;
  /** Connection cap and timeouts (default DEFAULT_LISTENER_LIMITS). */
  readonly limits?: ListenerLimits;
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
/** The outbound server; `inspect` serves a captured TLS connection under tls: inspect (capture-server.ts) as an inspected CONNECT is. */
export type OutboundServer = Server & { inspect(target: ProxyTarget, socket: Duplex, head: Buffer): void };

export function createOutboundServer(deps: OutboundDeps, mode: OutboundMode = 'proxy'): OutboundServer {
  const tunnels = new WeakMap<Duplex, ProxyTarget>();
  const inTunnels = createHttpServer(deps, (req) => {
    const authority = tunnels.get(req.socket);
    if (authority === undefined) throw new AirlockError(ErrorCode.Internal, 'a tunnelled request without its tunnel');
    return tunnelTarget(authority, req);
  });
  const server = createHttpServer(deps, (req) => requestTarget(mode, req));
  const log = deps.logger;
  const recorder = requestRecorder(deps.metrics, 'outbound');
  /** Serves `socket` as HTTP to `target`: as it is, or (inspect) from inside the agent's TLS, terminated here; `head` is read first. */
  const serveTunnel = (target: ProxyTarget, socket: Duplex, head: Buffer, inspect: boolean): void => {
    const egressCa = deps.egressCa;
    if (inspect) {
      if (egressCa === undefined) throw egressCaMissing();
      // Same server, same path: the requests are read from the agent's TLS, terminated here.
      inspectTunnel({ egressCa, metrics: deps.metrics, logger: log }, target, socket, head, (tls) => {
        tunnels.set(tls, inspectedTarget(target));
        inTunnels.emit('connection', tls);
      });
      return;
    }
    // As an absolute-form URL names it (default port dropped): the Host sent on, as for `http://host/`.
    tunnels.set(socket, parseAbsoluteTarget(`http://${target.authority}/`));
    if (head.length > 0) socket.unshift(head);
    inTunnels.emit('connection', socket);
  };
  const serveAsHttp = (target: ProxyTarget, socket: Duplex, head: Buffer, inspect = false): void => {
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    serveTunnel(target, socket, head, inspect);
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
  return Object.assign(server, { inspect: (target: ProxyTarget, socket: Duplex, head: Buffer) => serveTunnel(target, socket, head, true) });
}

function egressCaMissing(): AirlockError {
  return new AirlockError(ErrorCode.Internal, 'tls: inspect without an egress CA');
}

/** An HTTP server that authorizes and forwards each request to where `targetOf` says it goes. */
function createHttpServer(deps: OutboundDeps, targetOf: (req: IncomingMessage) => ProxyTarget): Server {
  const log = deps.logger;
  const recorder = requestRecorder(deps.metrics, 'outbound');
  // requireHostHeader: a missing Host is refused by singleHostHeader, with a JSON body.
  const limits = deps.limits ?? DEFAULT_LISTENER_LIMITS;
  const server = createServer({ requireHostHeader: false, ...httpServerOptions(limits) }, (req, res) => {
    const startedAt = recorder.start();
    const mcp: { target?: JsonRpcTarget } = {};
    proxyRequest(deps, targetOf, req, res, mcp).then(
      (outcome) => finish(outcome),
      (err: unknown) => {
        const reply = errorReply(err, log, mcp.target);
        sendErrorReply(res, reply);
        finish(reply.outcome);
      },
    );
    function finish(outcome: Outcome): void {
      recorder.finish(startedAt, outcome);
    }
  });
  answerClientErrors(server, log);
  countLimitRefusals(server, limits, 'outbound', deps.metrics);
  return server;
}

function requireSvid(identity: SvidSource): Svid {
  const svid = identity.current();
  if (svid === undefined) throw new NotReadyError();
  return svid;
}

/**
 * accept → identify (ourselves) → authorize → forward (mTLS to a peer sidecar, or direct to an
 * external host). `mcp.target` is set once the body is read as an MCP request: a refusal is then a JSON-RPC error.
 */
async function proxyRequest(deps: OutboundDeps, targetOf: (req: IncomingMessage) => ProxyTarget, req: IncomingMessage, res: ServerResponse, mcpReply: { target?: JsonRpcTarget }): Promise<Outcome> {
  const svid = requireSvid(deps.identity);
  const target = targetOf(req);
  const method = req.method ?? 'GET';
  // One bounded read serves MCP rules and the secret scan (README "Secret and PII blocking").
  const maxBody = deps.mcpMaxBody ?? DEFAULT_MCP_MAX_BODY_BYTES;
  // Parsed for MCP only where the pushed scope says a rule reads it (mcp/mcp-body-scope.ts).
  const first = await readCounted(req, maxBody, SECRET_SCAN_BODY_BYTES, deps.mcpBody?.needsHost(target.host) ?? true, deps.mcpBodies);
  mcpReply.target = jsonRpcTarget(first.message, req.headers);
  const secretFindings = scanRequest({ path: target.path, rawHeaders: req.rawHeaders, body: first.prefix });
  const question = { direction: 'outbound', sourceId: svid.spiffeId, host: target.host, port: target.port, method, path: target.path, mcp: first.message, mcpHeaderMismatch: first.headerMismatch, headers: authzHeaders(req.rawHeaders), ...(target.inspected === true ? { inspected: true } : {}), ...(secretFindings.length > 0 ? { secretFindings } : {}), ...(first.skipped === true ? { mcpBodySkipped: true } : {}) } as const;
  // Each ask may be sent again with more: the skipped body read (a stale scope), the name's checked
  // addresses (threat feeds): every ask of the first goes through the second.
  let egress: { answer?: Resolution; asked: AuthzRequest } = { asked: question };
  const resolving: Authorizer = {
    authorize: async (q) => {
      const r = await authorizeEgress(deps, q);
      egress = r;
      return r.decision;
    },
    close: () => undefined,
  };
  let decided: { decision: Decision; mcp: McpRead };
  try {
    decided = await authorizeReadingIfAsked(resolving, question, req, first, maxBody, deps.mcpBodies);
    // The external Agent dials the answer this decision judged (destination-check.ts externalAgent).
    if (decided.decision.allowed && decided.decision.upstream === undefined) deps.destinations.judged(dialable(egress.answer));
  } catch (err) {
    // Refused before a decision (a forbidden address, a name that does not resolve): an MCP client
    // still gets a JSON-RPC error for its id, so a skipped body is read for it.
    if (first.skipped === true) mcpReply.target = jsonRpcTarget((await readSkippedMcp(req, first, maxBody).catch(() => first)).message, req.headers);
    throw err;
  }
  const { decision, mcp } = decided;
  const { asked } = egress;
  if (mcp !== first) mcpReply.target = jsonRpcTarget(mcp.message, req.headers);
  assertAllowed(decision);
  deps.logger.debug({ decisionId: decision.decisionId, host: target.host, method }, 'outbound call allowed');
  // The Host goes on as the agent named it (not the peer sidecar's address): the peer authorizes
  // on it too. For an absolute-form request that is the URL's authority (RFC 9112 §3.2.2).
  const headers = requestHeadersToForward(req.headers);
  headers.host = target.authority;
  // The peer sidecar admits the call on its ticket without asking again; only a mesh peer gets one (over mTLS).
  if (decision.upstream !== undefined && decision.ticket !== undefined) headers[TICKET_HEADER] = decision.ticket;
  const { dispatcher, origin, describe } = destination(deps, decision, svid, target);
  const body = mcp.body;
  const request = { origin, method, path: target.path, headers, describe, body };
  try {
    if (body instanceof Buffer && mcp.message !== undefined && 'method' in mcp.message && mcp.message.method === 'tools/list') {
      // The answer lists only the tools this agent may call: asked fresh, once, for the listed names.
      await forwardToolsList(dispatcher, { ...request, body }, res, async (tools) => {
        const filter = await deps.authorizer.authorize({ ...asked, listedTools: [...new Set(tools.map((t) => t.name))], listedToolPins: tools });
        return new Set(filter.allowed ? filter.allowedTools : []);
      });
    } else {
      await forward(dispatcher, request, req, res);
    }
  } catch (err) {
    throw decision.upstream === undefined ? err : peerHandshakeRefusal(err, decision.upstream, deps.logger);
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
  if (authority.inspected === true && !url.startsWith('/')) throw new AirlockError(ErrorCode.BadRequest, 'inside TLS a request names only its path (GET /path): its destination is the tunnel\'s');
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
 * external host itself, through the Agent whose connector dials only checked addresses. Over TLS
 * when the request was read inside inspected TLS (never sent on in clear, whatever the decision),
 * or the decision says tls: inspect or originate: to the same URL with https:// (so port 80, the
 * default of http://, becomes 443).
 */
function destination(deps: OutboundDeps, decision: { upstream: Upstream | undefined; tls?: TlsMode }, svid: Svid, target: ProxyTarget): { dispatcher: Dispatcher; origin: string | undefined; describe: string } {
  const upstream = decision.upstream;
  if (upstream !== undefined) return { dispatcher: deps.meshPools.get(upstream, svid), origin: undefined, describe: `peer ${upstream.spiffeId} at ${upstream.address}` };
  if (decision.tls === 'unknown') throw unknownTlsMode();
  const tls = target.inspected === true || decision.tls !== undefined;
  const port = tls && target.inspected !== true && target.port === 80 ? 443 : target.port;
  const origin = `${tls ? 'https' : 'http'}://${formatHostPort({ host: target.host, port })}`;
  return { dispatcher: deps.external, origin, describe: origin };
}

function unknownTlsMode(): AirlockError {
  return new AirlockError(ErrorCode.AuthzUnavailable, 'the control plane asks for a TLS mode this sidecar does not know (a newer control plane): upgrade the sidecar');
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
async function openTunnel(deps: OutboundDeps, req: IncomingMessage, client: Duplex, head: Buffer, serveAsHttp: (target: ProxyTarget, client: Duplex, head: Buffer, inspect?: boolean) => void): Promise<'http' | 'tunnel'> {
  const target = parseAuthorityTarget(req.url);
  singleHostHeader(req); // a CONNECT's Host is not used, but none (HTTP/1.1) or two are refused all the same
  if ((deps.plainHttpPorts ?? DEFAULT_PLAIN_HTTP_PORTS).has(target.port)) {
    requireSvid(deps.identity);
    serveAsHttp(target, client, head);
    return 'http';
  }
  const decision = await authorizeTunnel(deps, target, req.rawHeaders);
  if (decision.upstream !== undefined || decision.tls === 'originate') {
    serveAsHttp(target, client, head);
    return 'http';
  }
  if (decision.tls === 'inspect') {
    // Checked before the 200: a tunnel that cannot be inspected is refused, not opened.
    if (deps.egressCa === undefined) throw egressCaMissing();
    serveAsHttp(target, client, head, true);
    return 'http';
  }
  if (decision.tls !== undefined) throw unknownTlsMode();
  await connectTunnel(deps, decision, target, client, head, () => client.write('HTTP/1.1 200 Connection Established\r\n\r\n'));
  return 'tunnel';
}

/** The CONNECT judged, and for an external host the checked answer it was judged on (a blind tunnel dials it). */
async function authorizeTunnel(deps: OutboundDeps, target: ProxyTarget, rawHeaders: readonly string[]): Promise<{ upstream: Upstream | undefined; decisionId: string; tls?: TlsMode; answer?: Resolution }> {
  const svid = requireSvid(deps.identity);
  const { decision, answer } = await authorizeEgress(deps, { direction: 'outbound', sourceId: svid.spiffeId, host: target.host, port: target.port, method: 'CONNECT', path: '', headers: authzHeaders(rawHeaders) });
  assertAllowed(decision);
  return { ...decision, ...(answer === undefined ? {} : { answer }) };
}

/**
 * accept → identify → authorize → tunnel to an external host: a captured TLS connection judged as
 * `CONNECT <SNI>:443` (capture-server.ts). `established` tells the client once the destination is
 * connected; `head` is what the client sent ahead (its ClientHello), written first. Under
 * tls: inspect, `inspect` terminates its TLS instead, as for an inspected CONNECT.
 */
export async function tunnel(deps: OutboundDeps, target: ProxyTarget, rawHeaders: readonly string[], client: Duplex, head: Buffer, established: () => void, inspect?: (target: ProxyTarget, client: Duplex, head: Buffer) => void): Promise<'http' | 'tunnel'> {
  const decision = await authorizeTunnel(deps, target, rawHeaders);
  if (decision.upstream !== undefined) {
    // A tunnel would carry the agent's own TLS, bypassing the mTLS identity the sidecar adds.
    throw new AirlockError(ErrorCode.BadRequest, `${target.host} is a mesh host: send plain http://${formatHostPort(target)}/… through this proxy; the sidecar adds mTLS`);
  }
  if (decision.tls === 'inspect' && inspect !== undefined) {
    if (deps.egressCa === undefined) throw egressCaMissing();
    inspect(target, client, head);
    return 'http';
  }
  if (decision.tls !== undefined) {
    // A blind tunnel would carry requests past the rules the policy wants judged on each of them;
    // under originate the app was to send plain http://, which the sidecar sends on over TLS.
    throw new AirlockError(ErrorCode.BadRequest, `the policy for ${formatHostPort(target)} says tls: ${decision.tls}: its requests are judged one by one, which a TLS tunnel of the app's own would hide (send plain http:// for originate)`);
  }
  await connectTunnel(deps, decision, target, client, head, established);
  return 'tunnel';
}

async function connectTunnel(deps: OutboundDeps, { decisionId, answer }: { decisionId: string; answer?: Resolution }, target: ProxyTarget, client: Duplex, head: Buffer, established: () => void): Promise<void> {
  const { socket: upstream, address } = await deps.destinations.dial(dialable(answer));
  deps.logger.info({ decisionId, host: target.host, port: target.port, address }, 'tunnel opened');
  established();
  if (head.length > 0) upstream.write(head);
  upstream.on('error', () => client.destroy());
  client.on('error', () => upstream.destroy());
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
  // Idle both ways for tunnelIdleTimeout: closed. The upstream socket reads what the host sends and
  // writes what the agent sends, so its own inactivity timer sees both directions.
  const idle = (deps.limits ?? DEFAULT_LISTENER_LIMITS).tunnelIdleTimeoutMs;
  upstream.setTimeout(idle, () => {
    deps.metrics.connectionsRefused.inc({ listener: 'outbound', reason: 'tunnel_idle' });
    deps.logger.info({ decisionId, host: target.host, port: target.port, idleMs: idle }, 'tunnel closed: idle');
    client.destroy();
  });
  upstream.pipe(client);
  client.pipe(upstream);
}
