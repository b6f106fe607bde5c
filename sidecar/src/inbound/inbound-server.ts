import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import type { Dispatcher } from 'undici';
import { DEFAULT_TLS_MIN_VERSION, parseHostPort, type TlsMinVersion } from '@airlock/common/config';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { answerClientErrors } from '@airlock/common/net';
import { countLimitRefusals, DEFAULT_LISTENER_LIMITS, httpServerOptions, type ListenerLimits } from '../http/listener-limits.ts';
import { spiffeIdFromSubjectAltName } from '@airlock/common/spiffe';
import type { Authorizer } from '../authz/authorizer.ts';
import { assertAllowed, errorReply, jsonRpcTarget, NotReadyError, sendErrorReply, type JsonRpcTarget } from '../http/errors.ts';
import { forward } from '../http/forward.ts';
import { authzHeaders } from '../http/authz-headers.ts';
import { requestHeadersToForward, singleHostHeader, XFCC } from '../http/headers.ts';
import type { Svid, SvidSource } from '../identity/svid.ts';
import { DEFAULT_MCP_MAX_BODY_BYTES } from '../mcp/read-request.ts';
import { authorizeReadingIfAsked, readCounted, type McpBodyCounter } from '../mcp/lazy-body.ts';
import type { McpBodyNeeds } from '../mcp/mcp-body-scope.ts';
import type { RevokedCertificates } from '../identity/trust-bundle-watcher.ts';
import { requestRecorder, type Outcome, type SidecarMetrics } from '../telemetry/metrics.ts';
import { ticketHeader, type TicketCheck, type TicketVerdict } from './ticket-check.ts';

export interface InboundDeps {
  readonly identity: SvidSource;
  readonly authorizer: Authorizer;
  /** Pool to the agent app on 127.0.0.1:<appPort>. */
  readonly app: Dispatcher;
  readonly metrics: SidecarMetrics;
  readonly logger: Logger;
  /** Revoked certificates pushed by the control plane: such peers are cut at the handshake. */
  readonly revoked?: RevokedCertificates;
  /** Identities revoked or quarantined, as pushed with the revocations: their open connections are closed at each push. */
  readonly contained?: { isContained(spiffeId: string): boolean };
  /** How much of a POST application/json body is read for MCP rules (default 64 KiB). */
  readonly mcpMaxBody?: number;
  /** Which destinations' bodies are read for MCP, as pushed; absent: every body. */
  readonly mcpBody?: McpBodyNeeds;
  readonly mcpBodies?: McpBodyCounter;
  /** Lowest TLS version a peer may speak (setting tlsMinVersion; default TLS 1.3). */
  readonly tlsMinVersion?: TlsMinVersion;
  /** Admits a call on its ticket without asking the control plane (ticket-check.ts); absent: every call asks. */
  readonly tickets?: InboundTickets;
  /** Connection cap and timeouts (default DEFAULT_LISTENER_LIMITS). */
  readonly limits?: ListenerLimits;
}

export interface InboundTickets {
  readonly checker: TicketCheck;
  /** The inbound address this sidecar registered: the destination instance a ticket must name. */
  readonly instance: () => string;
}

/**
 * The inbound mTLS listener. A peer must present a certificate that chains to the trust bundle and
 * names exactly one SPIFFE ID; that ID, taken from the handshake, is who the caller is.
 * The TLS context follows the SVID: it is replaced (for new handshakes) whenever the SVID changes.
 */
export function createInboundServer(deps: InboundDeps): Server {
  const peers = new WeakMap<Socket, string>();
  const ticketed = ticketRecorder(deps);
  const initial = deps.identity.current();
  const recorder = requestRecorder(deps.metrics, 'inbound');
  const minVersion = deps.tlsMinVersion ?? DEFAULT_TLS_MIN_VERSION;
  // requireHostHeader: a missing Host is refused by singleHostHeader, with a JSON body.
  const limits = deps.limits ?? DEFAULT_LISTENER_LIMITS;
  const server = createServer({ requestCert: true, rejectUnauthorized: true, requireHostHeader: false, minVersion, handshakeTimeout: limits.tlsHandshakeTimeoutMs, ...httpServerOptions(limits), ...(initial === undefined ? {} : tlsContext(initial, minVersion)) }, (req, res) => {
    const startedAt = recorder.start();
    const mcp: { target?: JsonRpcTarget } = {};
    admit(deps, ticketed, peers, req, res, mcp).then(
      (outcome) => finish(outcome),
      (err: unknown) => {
        const reply = errorReply(err, deps.logger, mcp.target);
        sendErrorReply(res, reply);
        finish(reply.outcome);
      },
    );
    function finish(outcome: Outcome): void {
      recorder.finish(startedAt, outcome);
    }
  });

  // Open connections by peer certificate, so a revocation also cuts the ones already established.
  const live = new Map<TLSSocket, { issuer: string; serial: string }>();
  server.on('secureConnection', (socket: TLSSocket) => {
    // Once per handshake. The issuer is the leaf's own (signed) issuer name: a serial is unique only per issuer.
    const cert = socket.getPeerX509Certificate();
    const issued = { issuer: cert?.issuer ?? '', serial: cert?.serialNumber ?? '' };
    if (deps.revoked !== undefined) {
      if (deps.revoked.has(issued.issuer, issued.serial)) {
        deps.metrics.inboundRejected.inc({ reason: 'revoked' });
        deps.logger.warn({ remote: socket.remoteAddress, ...issued }, 'refused a revoked peer certificate');
        socket.destroy();
        return;
      }
      live.set(socket, issued);
      socket.once('close', () => live.delete(socket));
    }
    try {
      peers.set(socket, spiffeIdFromSubjectAltName(cert?.subjectAltName).uri);
    } catch (err) {
      deps.metrics.inboundRejected.inc({ reason: 'invalid_svid' });
      deps.logger.warn({ remote: socket.remoteAddress, reason: err instanceof Error ? err.message : String(err) }, 'refused a peer certificate that is not one X.509-SVID');
      socket.destroy();
    }
  });
  // Until an SVID is held there is no certificate to answer a handshake with: a peer that dialled
  // (we are starting, or restarting at an advertised address) finds its connection closed before
  // the handshake, not a TLS alert. Prepended: runs before the TLS layer wraps the socket.
  server.prependListener('connection', (socket: Socket) => {
    if (deps.identity.current() !== undefined) return;
    deps.metrics.inboundRejected.inc({ reason: 'not_ready' });
    socket.destroy();
  });
  answerClientErrors(server, deps.logger);
  countLimitRefusals(server, limits, 'inbound', deps.metrics);
  server.on('tlsClientError', () => {
    // A socket closed above is counted as not_ready already.
    if (deps.identity.current() !== undefined) deps.metrics.inboundRejected.inc({ reason: 'handshake_failed' });
  });
  deps.identity.onChange((svid) => server.setSecureContext(tlsContext(svid, minVersion)));
  deps.revoked?.onChange(() => {
    for (const [socket, issued] of live) {
      if (deps.revoked?.has(issued.issuer, issued.serial) === true) {
        deps.metrics.inboundRejected.inc({ reason: 'revoked' });
        deps.logger.warn({ remote: socket.remoteAddress, ...issued }, 'closed a connection from a now revoked peer certificate');
        socket.destroy();
        continue;
      }
      // A quarantined peer keeps a valid certificate: its connections are cut by identity.
      const peer = peers.get(socket);
      if (peer !== undefined && deps.contained?.isContained(peer) === true) {
        deps.metrics.inboundRejected.inc({ reason: 'quarantined' });
        deps.logger.warn({ remote: socket.remoteAddress, peer }, 'closed a connection from a now quarantined peer');
        socket.destroy();
      }
    }
  });
  return server;
}

/** The TLS context for an SVID; minVersion goes with every one (setSecureContext resets what it is not given). */
function tlsContext(svid: Svid, minVersion: TlsMinVersion): SecureContextOptions {
  return { ca: svid.trustBundlePem, cert: svid.certChainPem, key: svid.keyPem, minVersion };
}

/** accept (mTLS done) → identify the peer → authorize → forward to the app with XFCC. `mcpReply` as for outbound. */
async function admit(deps: InboundDeps, ticketed: TicketRecorder, peers: WeakMap<Socket, string>, req: IncomingMessage, res: ServerResponse, mcpReply: { target?: JsonRpcTarget }): Promise<Outcome> {
  const svid = deps.identity.current();
  if (svid === undefined) throw new NotReadyError();
  const peerId = peers.get(req.socket);
  if (peerId === undefined) {
    req.socket.destroy();
    throw new AirlockError(ErrorCode.Unauthenticated, 'connection without a verified peer identity');
  }
  const { host, port } = hostOf(singleHostHeader(req));
  const method = req.method ?? 'GET';
  const path = req.url ?? '/';
  // Rules on MCP are judged on both sides: this side reads the body as the caller's side did.
  const maxBody = deps.mcpMaxBody ?? DEFAULT_MCP_MAX_BODY_BYTES;
  // Parsed only where the pushed scope says a rule reads MCP for this agent; a ticket binds which (ticket-check.ts).
  let mcp = await readCounted(req, maxBody, 0, deps.mcpBody?.needsAgent(svid.spiffeId) ?? true, deps.mcpBodies);
  mcpReply.target = jsonRpcTarget(mcp.message, req.headers);
  // The caller's decision, bound to exactly this call, admits it; anything else asks the control plane.
  // Mcp-Method / Mcp-Name headers that disagree with the body are for the control plane to judge.
  const onTicket = mcp.headerMismatch === undefined ? deps.tickets?.checker.check(ticketHeader(req.rawHeaders), { peer: peerId, self: svid.spiffeId, instance: deps.tickets.instance(), host, port, method, path, mcp: mcp.message }) : undefined;
  if (onTicket?.admitted === true) {
    ticketed.admitted();
    deps.logger.debug({ decisionId: onTicket.claims.decisionId, peer: peerId, method }, 'inbound call admitted on its ticket');
  } else {
    if (onTicket !== undefined) ticketed.fellBack(onTicket, peerId);
    const asked = await authorizeReadingIfAsked(deps.authorizer, { direction: 'inbound', sourceId: peerId, destinationId: svid.spiffeId, host, port, method, path, mcp: mcp.message, mcpHeaderMismatch: mcp.headerMismatch, headers: authzHeaders(req.rawHeaders), ...(mcp.skipped === true ? { mcpBodySkipped: true } : {}) }, req, mcp, maxBody, deps.mcpBodies);
    const decision = asked.decision;
    if (asked.mcp !== mcp) mcpReply.target = jsonRpcTarget(asked.mcp.message, req.headers);
    mcp = asked.mcp;
    assertAllowed(decision);
    deps.logger.debug({ decisionId: decision.decisionId, peer: peerId, method }, 'inbound call allowed');
  }
  const headers = requestHeadersToForward(req.headers);
  // Only this sidecar vouches for the caller: any XFCC that arrived was dropped above.
  headers[XFCC] = `By=${svid.spiffeId};URI=${peerId}`;
  await forward(deps.app, { method, path, headers, describe: 'the local app', body: mcp.body }, req, res);
  return 'allowed';
}

interface TicketRecorder {
  admitted(): void;
  fellBack(verdict: Extract<TicketVerdict, { admitted: false }>, peer: string): void;
}

/** Refused tickets are logged at most this many times a second (a peer could send nothing else); the rest are counted. */
const REJECTIONS_LOGGED_PER_SECOND = 10;

/** Counts admissions and fallbacks (label children bound on first use), and logs a refused ticket, never its MAC. */
function ticketRecorder(deps: InboundDeps): TicketRecorder {
  const admissions = deps.metrics.ticketAdmissions;
  const fallbacks = new Map<string, { inc(): void }>();
  const rejections = new Map<string, { inc(): void }>();
  let second = 0;
  let logged = 0;
  let suppressed = 0;
  const bound = (map: Map<string, { inc(): void }>, make: () => { inc(): void }, reason: string): { inc(): void } => {
    let c = map.get(reason);
    if (c === undefined) {
      c = make();
      map.set(reason, c);
    }
    return c;
  };
  return {
    admitted: () => admissions.inc(),
    fellBack(verdict, peer) {
      const reason = verdict.reason;
      bound(fallbacks, () => deps.metrics.ticketFallbacks.labels({ reason }), reason).inc();
      if (reason === 'absent') return;
      bound(rejections, () => deps.metrics.ticketRejections.labels({ reason }), reason).inc();
      const now = Math.floor(Date.now() / 1000);
      if (now !== second) {
        second = now;
        logged = 0;
      }
      if (logged >= REJECTIONS_LOGGED_PER_SECOND) {
        suppressed++;
        return;
      }
      logged++;
      const c = verdict.claims;
      deps.logger.warn(
        { reason, peer, keyId: verdict.keyId, decisionId: c?.decisionId, ticketSource: c?.source, ticketDestination: c?.destination, method: c?.method, ...(suppressed === 0 ? {} : { suppressed }) },
        'refused a ticket; asking the control plane',
      );
      suppressed = 0;
    },
  };
}

/** Host and port the caller asked for, from the Host header (port 80 when it names none). */
function hostOf(hostHeader: string | undefined): { host: string; port: number } {
  const value = (hostHeader ?? '').trim().toLowerCase();
  if (value === '') throw new AirlockError(ErrorCode.BadRequest, 'missing Host header');
  if (/:\d+$/.test(value)) {
    try {
      return parseHostPort(value);
    } catch {
      throw new AirlockError(ErrorCode.BadRequest, `bad Host header: ${value.slice(0, 200)}`);
    }
  }
  return { host: value.replace(/^\[(.*)\]$/, '$1'), port: 80 };
}
