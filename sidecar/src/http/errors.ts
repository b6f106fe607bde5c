import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '@airlock/common/logging';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { rawJsonAnswer } from '@airlock/common/net';
import type { Decision, McpMessage } from '../authz/authorizer.ts';
import { ForbiddenDestinationError } from '../outbound/destination-check.ts';
import type { Outcome } from '../telemetry/metrics.ts';

/** A DENY decision, carried as an error so the one rescue step below turns it into the 403 (or 429) body. */
class DeniedError extends AirlockError {
  readonly decisionId: string;
  readonly policy: string;
  readonly policyVersion: number;
  readonly rule: string;
  /** A held call not approved: approval_denied, approval_timeout, approval_unknown; else 'denied'. */
  readonly kind: string;
  /** Set when a RateLimit denied it. */
  readonly retryAfterMs: number | undefined;

  constructor(decision: { decisionId: string; reason: string; policy: string; policyVersion: number; rule: string; approvalOutcome?: string; retryAfterMs?: number }) {
    super(ErrorCode.Denied, decision.reason);
    this.name = 'DeniedError';
    this.decisionId = decision.decisionId;
    this.policy = decision.policy;
    this.policyVersion = decision.policyVersion;
    this.rule = decision.rule;
    this.kind = decision.approvalOutcome ?? 'denied';
    this.retryAfterMs = decision.retryAfterMs;
  }
}

/** The sidecar does not hold an SVID yet: nothing can be authorized or sent over mTLS. */
export class NotReadyError extends AirlockError {
  constructor() {
    super(ErrorCode.AuthzUnavailable, 'the sidecar has no SVID yet');
    this.name = 'NotReadyError';
  }
}

/** Throws DeniedError unless the decision allows the call. */
export function assertAllowed(decision: Decision): asserts decision is Extract<Decision, { allowed: true }> {
  if (!decision.allowed) throw new DeniedError(decision);
}

interface ErrorReply {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly outcome: Outcome;
  /** Sent as one server-sent event (a JSON-RPC error to a client that accepts only text/event-stream). */
  readonly eventStream?: boolean;
  /** Extra response headers (Retry-After of a rate-limited call). */
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * The JSON-RPC error code of an MCP request Airlock refused (a policy denied it, or its destination
 * address is forbidden): in JSON-RPC's range for implementation-defined server errors, clear of the
 * MCP SDK's own (-32000 connection closed, -32001 request timeout, -32002 resource not found, -32042).
 */
export const MCP_DENIED_CODE = -32050;
/** The JSON-RPC error code of an MCP request a RateLimit refused (`data` as the 429 body: retryAfterMs). */
export const MCP_RATE_LIMITED_CODE = -32051;

/** Where a refusal of an MCP request is answered as a JSON-RPC error: its id, and how the client takes answers. */
export interface JsonRpcTarget {
  readonly id: string | number;
  readonly eventStream: boolean;
}

/**
 * An MCP request (a JSON-RPC request with an id, read from the body) from a Streamable HTTP client
 * (its Accept lists application/json or text/event-stream: the transport requires both) is answered
 * as JSON-RPC when refused, so an agent's MCP client surfaces the reason as an error of that call;
 * anything else (a notification, an unreadable body, a plain HTTP call) keeps the 403 JSON.
 */
export function jsonRpcTarget(message: McpMessage | undefined, headers: IncomingHttpHeaders): JsonRpcTarget | undefined {
  if (message === undefined || !('method' in message)) return undefined;
  const id = message.id;
  if (typeof id !== 'string' && typeof id !== 'number') return undefined;
  const accept = (headers.accept ?? '').toLowerCase();
  const json = accept.includes('application/json');
  if (!json && !accept.includes('text/event-stream')) return undefined;
  return { id, eventStream: !json };
}

/**
 * The one place where errors become HTTP statuses and JSON bodies (both directions, both
 * listeners). Anything unexpected is a 500 `internal` with a generic reason and a warning log: a
 * bug in the sidecar is not the destination's failure (502 says the upstream failed).
 */
export function errorReply(err: unknown, log: Logger, mcp?: JsonRpcTarget): ErrorReply {
  if (err instanceof DeniedError && err.retryAfterMs !== undefined) {
    // Retry-After is whole seconds (RFC 9110); the body has the exact wait.
    const headers = { 'retry-after': String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))) };
    const body = { error: 'rate_limited', reason: err.message, retryAfterMs: err.retryAfterMs, policyVersion: err.policyVersion, decisionId: err.decisionId };
    return mcp === undefined ? { status: 429, outcome: 'rate_limited', body, headers } : { ...jsonRpcDenial(mcp, body, MCP_RATE_LIMITED_CODE), outcome: 'rate_limited', headers };
  }
  if (err instanceof DeniedError) {
    // What an agent (or the LLM behind it) reads to learn why: the policy version, policy and rule.
    const body = { error: err.kind, reason: err.message, policy: err.policy, policyVersion: err.policyVersion, rule: err.rule, decisionId: err.decisionId };
    return mcp === undefined ? { status: 403, outcome: 'denied', body } : jsonRpcDenial(mcp, body);
  }
  if (err instanceof ForbiddenDestinationError) {
    const body = { error: 'forbidden_destination', reason: err.message, rule: err.rule, address: err.address };
    return mcp === undefined ? { status: 403, outcome: 'denied', body } : jsonRpcDenial(mcp, body);
  }
  if (err instanceof NotReadyError) {
    return { status: 503, outcome: 'unavailable', body: { error: 'not_ready', reason: err.message } };
  }
  if (err instanceof AirlockError) {
    switch (err.code) {
      case ErrorCode.AuthzUnavailable:
        return { status: 503, outcome: 'unavailable', body: { error: 'authorization_unavailable', reason: `no authorization decision: ${err.message}` } };
      case ErrorCode.UpstreamUnavailable:
      case ErrorCode.UpstreamIdentity:
        return { status: 502, outcome: 'upstream_error', body: { error: 'upstream_unavailable', reason: err.message } };
      case ErrorCode.UpstreamTimeout:
        return { status: 504, outcome: 'upstream_error', body: { error: 'upstream_timeout', reason: err.message } };
      case ErrorCode.BadRequest:
        return { status: 400, outcome: 'bad_request', body: { error: 'bad_request', reason: err.message } };
      default:
        break;
    }
  }
  log.warn({ reason: errorMessage(err) }, 'unexpected error while proxying');
  return { status: 500, outcome: 'internal', body: { error: 'internal', reason: 'internal error in the sidecar' } };
}

/**
 * A refused MCP request's answer: HTTP 200 (Streamable HTTP carries JSON-RPC errors in a 200 answer)
 * with a JSON-RPC error for its id; `data` holds what the 403 JSON holds (reason, policy, decision id).
 */
function jsonRpcDenial(mcp: JsonRpcTarget, data: { readonly error: string; readonly reason: string }, code = MCP_DENIED_CODE): ErrorReply {
  const body = { jsonrpc: '2.0', id: mcp.id, error: { code, message: data.reason, data } };
  return { status: 200, outcome: 'denied', body, eventStream: mcp.eventStream };
}

export function sendErrorReply(res: ServerResponse, reply: ErrorReply): void {
  if (res.headersSent) {
    // The response has begun: the only honest signal left is a cut connection.
    res.destroy();
    return;
  }
  const json = JSON.stringify(reply.body);
  const text = reply.eventStream === true ? `event: message\ndata: ${json}\n\n` : json;
  res.writeHead(reply.status, { ...reply.headers, 'content-type': reply.eventStream === true ? 'text/event-stream' : 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The same reply on a raw socket (a refused CONNECT has no ServerResponse). */
export function sendErrorReplyOnSocket(socket: Duplex, reply: ErrorReply): void {
  socket.end(rawJsonAnswer(reply.status, reply.body, reply.headers));
}
