import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { parseSpiffeId } from '@airlock/common/spiffe';
import type { JoinTokenRefusal, Store } from '../store/store.ts';
import { hashToken, newSecretToken } from './token-hash.ts';

export const DEFAULT_JOIN_TOKEN_TTL_MS = 3_600_000;
export const MAX_JOIN_TOKEN_TTL_MS = 86_400_000;

export interface CreatedJoinToken {
  /** The secret: shown once to the admin, never stored or logged. */
  readonly token: string;
  readonly identity: string;
  readonly expiresAt: Date;
}

/** Why attestation with a join token failed; `reason` is stable for metrics. */
export class JoinTokenError extends AirlockError {
  readonly reason: JoinTokenRefusal;

  constructor(reason: JoinTokenRefusal) {
    const why = { unknown: 'the join token is not known', used: 'the join token was already used', expired: 'the join token has expired' }[reason];
    super(ErrorCode.Attestation, why);
    this.name = 'JoinTokenError';
    this.reason = reason;
  }
}

/** One-time join tokens: each is bound to one SPIFFE ID, expires, and is stored only as a hash. */
export class JoinTokens {
  readonly #store: Store;
  readonly #trustDomain: string;
  readonly #now: () => number;

  constructor(store: Store, trustDomain: string, now: () => number = Date.now) {
    this.#store = store;
    this.#trustDomain = trustDomain;
    this.#now = now;
  }

  createJoinToken(identity: string, ttlMs: number = DEFAULT_JOIN_TOKEN_TTL_MS): CreatedJoinToken {
    const id = parseSpiffeId(identity);
    if (id.trustDomain !== this.#trustDomain) {
      throw new AirlockError(ErrorCode.BadRequest, `${identity} is not in this control plane's trust domain ${this.#trustDomain}`);
    }
    if (!Number.isInteger(ttlMs) || ttlMs <= 0 || ttlMs > MAX_JOIN_TOKEN_TTL_MS) {
      throw new AirlockError(ErrorCode.BadRequest, `the join token lifetime must be between 1 s and ${MAX_JOIN_TOKEN_TTL_MS / 1000} s`);
    }
    const token = newSecretToken();
    const expiresAt = this.#now() + ttlMs;
    this.#store.insertJoinToken({ hash: hashToken(token), spiffeId: id.uri, expiresAt });
    return { token, identity: id.uri, expiresAt: new Date(expiresAt) };
  }

  /** The SPIFFE ID the token was made for; throws JoinTokenError when unknown, used or expired. */
  consumeJoinToken(token: string): string {
    const result = this.#store.consumeJoinToken(hashToken(token), this.#now());
    if (!result.ok) throw new JoinTokenError(result.reason);
    return result.spiffeId;
  }
}
