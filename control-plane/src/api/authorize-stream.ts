import { status, type ServerDuplexStream } from '@grpc/grpc-js';
import { AirlockError } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { AuthorizeRequest, type AuthorizeResult, type AuthorizeStreamRequest, type AuthorizeStreamResponse } from '@airlock/proto/authorization/v1';
import type { Authorizer } from '../authz/authorize.ts';
import { stillTrusted, type PeerIssuers, type VerifiedPeer } from '../authz/peer.ts';
import { toGrpcFailure } from './grpc-status.ts';

export interface AuthorizeStreamDeps {
  readonly authorizer: Authorizer;
  readonly logger: Logger;
  /** The caller from the stream's client certificate, verified once when the stream opens. */
  readonly caller: VerifiedPeer | AirlockError;
  /** The CAs trusted now: a stream whose caller's root was retired (even by force) ends. */
  readonly issuers: () => PeerIssuers;
  readonly now?: () => number;
}

/**
 * AuthorizeStream: every check of every batch goes through the same decision code as the unary
 * RPC (each decided, audited and counted on its own). A refused check (about another identity, or
 * malformed) is answered with its refusal and the stream goes on. The certificate is parsed and
 * its signature checked once per stream, not per check; its expiry, and that its root is still
 * trusted, are checked per batch, and such a stream ends with UNAUTHENTICATED (the sidecar
 * reconnects with its renewed SVID).
 */
export function serveAuthorizeStream(call: ServerDuplexStream<AuthorizeStreamRequest, AuthorizeStreamResponse>, deps: AuthorizeStreamDeps): void {
  const now = deps.now ?? Date.now;
  let ended = false;
  call.on('data', (batch: AuthorizeStreamRequest) => {
    if (ended) return;
    const caller = deps.caller;
    if (!(caller instanceof AirlockError)) {
      const why =
        now() > caller.notAfter ? 'the client certificate of this stream has expired'
        : !stillTrusted(caller, deps.issuers()) ? 'the root that issued the client certificate of this stream is no longer trusted'
        : undefined;
      if (why !== undefined) {
        ended = true;
        call.emit('error', { code: status.UNAUTHENTICATED, details: why });
        return;
      }
    }
    const id = caller instanceof AirlockError ? caller : caller.id;
    call.write({ results: batch.checks.map((check) => decide(deps, id, check.id, check.request)) });
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

function decide(deps: AuthorizeStreamDeps, caller: VerifiedPeer['id'] | AirlockError, id: number, request: AuthorizeRequest | undefined): AuthorizeResult {
  try {
    // An empty check is refused (and audited) by the decision code like any malformed request.
    return { id, decision: deps.authorizer.authorize(caller, request ?? AuthorizeRequest.fromPartial({})), refusal: undefined };
  } catch (err) {
    if (!(err instanceof AirlockError)) deps.logger.error({ err }, 'internal error in AuthorizeStream');
    const failure = toGrpcFailure(err);
    return { id, decision: undefined, refusal: { code: failure.code, message: failure.details } };
  }
}
