import { status, type ServerDuplexStream } from '@grpc/grpc-js';
import { AirlockError } from '@airlock/common/errors';
import { MAX_AUTHZ_CHECKS_PER_MESSAGE } from '@airlock/common/headers';
import type { Logger } from '@airlock/common/logging';
import { AuthorizeRequest, type AuthorizeCheck, type AuthorizeResult, type AuthorizeStreamRequest, type AuthorizeStreamResponse } from '@airlock/proto/authorization/v1';
import type { Authorizer } from '../../authz/authorize.ts';
import { stillTrusted, type PeerIssuers, type VerifiedPeer } from '../peer.ts';
import { toGrpcFailure } from '../grpc-status.ts';
import { TokenBucket, type RefusalLog } from '../rate-limit.ts';

/** What one stream may ask: checks per message, and messages per second (a token bucket). */
export interface AuthorizeStreamLimits {
  readonly maxChecksPerMessage: number;
  readonly messagesPerSecond: number;
  readonly messageBurst: number;
}

/**
 * A sidecar sends one message per event-loop turn that had calls (batches of up to 512), so at one
 * check per message the control plane's CPU per message (~180 µs, bench/README.md) caps a stream
 * well below this rate: a working sidecar is not throttled, a runaway one is bounded.
 */
export const DEFAULT_AUTHORIZE_STREAM_LIMITS: AuthorizeStreamLimits = {
  maxChecksPerMessage: MAX_AUTHZ_CHECKS_PER_MESSAGE,
  messagesPerSecond: 5000,
  messageBurst: 5000,
};

export interface AuthorizeStreamDeps {
  readonly authorizer: Authorizer;
  readonly logger: Logger;
  /** Where throttled messages are recorded, at a bounded rate. */
  readonly warnings: RefusalLog;
  /** The caller from the stream's client certificate, verified once when the stream opened (a stream without one is refused before this). */
  readonly caller: VerifiedPeer;
  /** The CAs trusted now: a stream whose caller's root was retired (even by force) ends. */
  readonly issuers: () => PeerIssuers;
  readonly limits?: AuthorizeStreamLimits;
  readonly now?: () => number;
}

/**
 * AuthorizeStream: every check of every batch goes through the same decision code as the unary
 * RPC (each decided, audited and counted on its own). A refused check (about another identity, or
 * malformed) is answered with its refusal and the stream goes on. The certificate is parsed and
 * its signature checked once per stream, not per check; its expiry, and that its root is still
 * trusted, are checked per batch, and such a stream ends with UNAUTHENTICATED (the sidecar
 * reconnects with its renewed SVID). A message over the stream's limits (too many checks, or
 * faster than its bucket refills) has each check refused with RESOURCE_EXHAUSTED, undecided (the
 * message is one refusal event, at a bounded rate); the stream goes on, so a burst fails a few calls closed rather than every call.
 */
export function serveAuthorizeStream(call: ServerDuplexStream<AuthorizeStreamRequest, AuthorizeStreamResponse>, deps: AuthorizeStreamDeps): void {
  const now = deps.now ?? Date.now;
  const limits = deps.limits ?? DEFAULT_AUTHORIZE_STREAM_LIMITS;
  const bucket = new TokenBucket({ perSecond: limits.messagesPerSecond, burst: limits.messageBurst });
  const caller = deps.caller;
  let ended = false;
  call.on('data', (batch: AuthorizeStreamRequest) => {
    if (ended) return;
    const why =
      now() > caller.notAfter ? 'the client certificate of this stream has expired'
      : !stillTrusted(caller, deps.issuers()) ? 'the root that issued the client certificate of this stream is no longer trusted'
      : undefined;
    if (why !== undefined) {
      ended = true;
      call.emit('error', { code: status.UNAUTHENTICATED, details: why });
      return;
    }
    const over =
      batch.checks.length > limits.maxChecksPerMessage ? `more than ${limits.maxChecksPerMessage} checks in one message`
      : !bucket.take() ? `more than ${limits.messagesPerSecond} messages per second on one stream`
      : undefined;
    if (over !== undefined) {
      deps.warnings.refusal({ operation: 'AuthorizeStream', reasonCode: 'resource_exhausted', reason: `${over} (${batch.checks.length} checks refused)`, caller: caller.id.uri });
      call.write({ results: batch.checks.map((check) => exhausted(check, over)) });
      return;
    }
    // A held call's wait (approval_id) is answered on its own when its approval is decided or times out.
    const held = batch.checks.filter((check) => check.request !== undefined && check.request.approvalId !== '');
    for (const check of held) {
      void answerHeld(deps, caller, check.id, check.request as AuthorizeRequest).then((result) => {
        if (!ended) call.write({ results: [result] });
      });
    }
    const direct = held.length === 0 ? batch.checks : batch.checks.filter((check) => !held.includes(check));
    if (direct.length > 0) call.write({ results: direct.map((check) => answerCheck(deps, caller, check.id, check.request)) });
  });
  call.on('end', () => {
    if (ended) return;
    ended = true;
    call.end();
  });
  // The sidecar went away (cancelled, or its connection dropped): nothing to answer.
  call.on('error', () => {
    ended = true;
  });
}

function exhausted(check: AuthorizeCheck, why: string): AuthorizeResult {
  return { id: check.id, decision: undefined, refusal: { code: status.RESOURCE_EXHAUSTED, message: why } };
}

async function answerHeld(deps: AuthorizeStreamDeps, caller: VerifiedPeer, id: number, request: AuthorizeRequest): Promise<AuthorizeResult> {
  try {
    return { id, decision: await deps.authorizer.authorizeHeld(caller.id, request), refusal: undefined };
  } catch (err) {
    if (!(err instanceof AirlockError)) deps.logger.error({ err }, 'internal error in AuthorizeStream');
    const failure = toGrpcFailure(err);
    return { id, decision: undefined, refusal: { code: failure.code, message: failure.details } };
  }
}

function answerCheck(deps: AuthorizeStreamDeps, caller: VerifiedPeer, id: number, request: AuthorizeRequest | undefined): AuthorizeResult {
  try {
    // An empty check is refused (and audited) by the decision code like any malformed request.
    return { id, decision: deps.authorizer.authorize(caller.id, request ?? AuthorizeRequest.fromPartial({})), refusal: undefined };
  } catch (err) {
    if (!(err instanceof AirlockError)) deps.logger.error({ err }, 'internal error in AuthorizeStream');
    const failure = toGrpcFailure(err);
    return { id, decision: undefined, refusal: { code: failure.code, message: failure.details } };
  }
}
