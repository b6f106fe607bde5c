import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '@airlock/common/logging';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { rawJsonAnswer } from '@airlock/common/net';
import type { Decision } from '../authz/authorizer.ts';
import { ForbiddenDestinationError } from '../outbound/destination-check.ts';
import type { Outcome } from '../telemetry/metrics.ts';

/** A DENY decision, carried as an error so the one rescue step below turns it into the 403 body. */
class DeniedError extends AirlockError {
  readonly decisionId: string;
  readonly policy: string;
  readonly policyVersion: number;
  readonly rule: string;

  constructor(decision: { decisionId: string; reason: string; policy: string; policyVersion: number; rule: string }) {
    super(ErrorCode.Denied, decision.reason);
    this.name = 'DeniedError';
    this.decisionId = decision.decisionId;
    this.policy = decision.policy;
    this.policyVersion = decision.policyVersion;
    this.rule = decision.rule;
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
  readonly body: Record<string, string | number>;
  readonly outcome: Outcome;
}

/**
 * The one place where errors become HTTP statuses and JSON bodies (both directions, both
 * listeners). Anything unexpected is a 500 `internal` with a generic reason and a warning log: a
 * bug in the sidecar is not the destination's failure (502 says the upstream failed).
 */
export function errorReply(err: unknown, log: Logger): ErrorReply {
  if (err instanceof DeniedError) {
    // What an agent (or the LLM behind it) reads to learn why: the policy version, policy and rule.
    const body = { error: 'denied', reason: err.message, policy: err.policy, policyVersion: err.policyVersion, rule: err.rule, decisionId: err.decisionId };
    return { status: 403, outcome: 'denied', body };
  }
  if (err instanceof ForbiddenDestinationError) {
    return { status: 403, outcome: 'denied', body: { error: 'forbidden_destination', reason: err.message, rule: err.rule, address: err.address } };
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
      case ErrorCode.BadRequest:
        return { status: 400, outcome: 'bad_request', body: { error: 'bad_request', reason: err.message } };
      default:
        break;
    }
  }
  log.warn({ reason: errorMessage(err) }, 'unexpected error while proxying');
  return { status: 500, outcome: 'internal', body: { error: 'internal', reason: 'internal error in the sidecar' } };
}

export function sendErrorReply(res: ServerResponse, reply: ErrorReply): void {
  if (res.headersSent) {
    // The response has begun: the only honest signal left is a cut connection.
    res.destroy();
    return;
  }
  const text = JSON.stringify(reply.body);
  res.writeHead(reply.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The same reply on a raw socket (a refused CONNECT has no ServerResponse). */
export function sendErrorReplyOnSocket(socket: Duplex, reply: ErrorReply): void {
  socket.end(rawJsonAnswer(reply.status, reply.body));
}
