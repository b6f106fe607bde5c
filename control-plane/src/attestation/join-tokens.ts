import { createHash } from 'node:crypto';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { checkLabels, KUBERNETES_LABEL_PREFIX, type Labels } from '@airlock/common/labels';
import { parseSpiffeId } from '@airlock/common/spiffe';
import type { JoinTokenListing, JoinTokenRefusal, Store } from '../store/store.ts';
import { hashToken, newSecretToken } from './token-hash.ts';

export const DEFAULT_JOIN_TOKEN_TTL_MS = 3_600_000;
export const MAX_JOIN_TOKEN_TTL_MS = 86_400_000;

/** Hex characters of a token's hash shown as its id: enough to be unique, useless to attest. */
export const JOIN_TOKEN_ID_CHARS = 16;
const MIN_ID_CHARS = 8;

export function joinTokenId(hash: string): string {
  return hash.slice(0, JOIN_TOKEN_ID_CHARS);
}

export type JoinTokenStatus = 'unused' | 'used' | 'expired' | 'revoked';

/** A join token as an admin lists it: never the secret, never the full hash. */
export interface JoinTokenSummary {
  readonly id: string;
  readonly identity: string;
  readonly status: JoinTokenStatus;
  readonly expiresAt: string;
  readonly createdAt: string | undefined;
  readonly usedAt: string | undefined;
  readonly revokedAt: string | undefined;
  readonly labels: Labels;
}

function iso(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString();
}

function summaryOf(t: JoinTokenListing, now: number): JoinTokenSummary {
  // Revoked wins over used/expired: it is what an admin did last.
  const status: JoinTokenStatus = t.revokedAt !== undefined ? 'revoked' : t.usedAt !== undefined ? 'used' : t.expiresAt <= now ? 'expired' : 'unused';
  return { id: joinTokenId(t.hash), identity: t.spiffeId, status, expiresAt: new Date(t.expiresAt).toISOString(), createdAt: iso(t.createdAt), usedAt: iso(t.usedAt), revokedAt: iso(t.revokedAt), labels: t.labels ?? {} };
}

export interface CreatedJoinToken {
  /** The secret: shown once to the admin, never stored or logged. */
  readonly token: string;
  /** What `airlock token list` and `token revoke` call it. */
  readonly id: string;
  readonly identity: string;
  readonly expiresAt: Date;
  readonly labels: Labels;
}

/** Why attestation with a join token failed; `reason` is stable for metrics. */
export class JoinTokenError extends AirlockError {
  readonly reason: JoinTokenRefusal;

  constructor(reason: JoinTokenRefusal) {
    const why = { unknown: 'the join token is not known', used: 'the join token was already used', expired: 'the join token has expired', revoked: 'the join token was revoked' }[reason];
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

  /** `labels` are given to the agent that joins with the token (validated like Kubernetes labels). */
  async createJoinToken(identity: string, ttlMs: number = DEFAULT_JOIN_TOKEN_TTL_MS, labels: Labels = {}): Promise<CreatedJoinToken> {
    const id = parseSpiffeId(identity);
    if (id.trustDomain !== this.#trustDomain) {
      throw new AirlockError(ErrorCode.BadRequest, `${identity} is not in this control plane's trust domain ${this.#trustDomain}`);
    }
    if (!Number.isInteger(ttlMs) || ttlMs <= 0 || ttlMs > MAX_JOIN_TOKEN_TTL_MS) {
      throw new AirlockError(ErrorCode.BadRequest, `the join token lifetime must be between 1 s and ${MAX_JOIN_TOKEN_TTL_MS / 1000} s`);
    }
    try {
      checkLabels(labels);
    } catch (err) {
      throw new AirlockError(ErrorCode.BadRequest, err instanceof Error ? err.message : String(err));
    }
    // Only Kubernetes attestation vouches for these: an admin's label must not pose as one.
    const reserved = Object.keys(labels).find((k) => k.startsWith(KUBERNETES_LABEL_PREFIX));
    if (reserved !== undefined) throw new AirlockError(ErrorCode.BadRequest, `label key "${reserved}": ${KUBERNETES_LABEL_PREFIX}… labels are set by Kubernetes attestation only`);
    const token = newSecretToken();
    const expiresAt = this.#now() + ttlMs;
    const hash = hashToken(token);
    await this.#store.insertJoinToken({ hash, spiffeId: id.uri, expiresAt, createdAt: this.#now(), labels });
    return { token, id: joinTokenId(hash), identity: id.uri, expiresAt: new Date(expiresAt), labels: { ...labels } };
  }

  /** Every join token, newest first, as an admin may see it (no secret). */
  async list(): Promise<JoinTokenSummary[]> {
    const now = this.#now();
    return (await this.#store.listJoinTokens()).map((t) => summaryOf(t, now));
  }

  /**
   * Revokes the one token whose id (a prefix of its hash, at least MIN_ID_CHARS hex) is `id`; a
   * used or expired one is marked too. An id matching none is NotFound, several is BadRequest.
   */
  async revoke(id: string): Promise<{ token: JoinTokenSummary; alreadyRevoked: boolean }> {
    const prefix = id.toLowerCase();
    if (!new RegExp(`^[0-9a-f]{${MIN_ID_CHARS},64}$`).test(prefix)) {
      throw new AirlockError(ErrorCode.BadRequest, `a join token id is ${MIN_ID_CHARS} to 64 hex characters (from \`airlock token list\`)`);
    }
    const before = await this.#store.findJoinTokens(prefix);
    if (before.length === 0) throw new AirlockError(ErrorCode.NotFound, `no join token has id ${prefix}`);
    if (before.length > 1) throw new AirlockError(ErrorCode.BadRequest, `${before.length} join tokens have ids starting ${prefix}; give more characters`);
    const now = this.#now();
    const [after] = await this.#store.revokeJoinTokens(prefix, now);
    if (after === undefined) throw new AirlockError(ErrorCode.NotFound, `no join token has id ${prefix}`);
    return { token: summaryOf(after, now), alreadyRevoked: before[0]?.revokedAt !== undefined };
  }

  /**
   * The SPIFFE ID the token was made for and its labels; throws JoinTokenError when unknown, used or
   * expired. `publicKey` (the CSR's SPKI, DER) and `inboundAddress` name the claimant: the same
   * request may spend the token again within JOIN_TOKEN_RETRY_MS (its first answer was lost, e.g.
   * to a replica that died), so a sidecar can retry on another replica. Another key or address
   * cannot: that needs the private key of the CSR, which never leaves the sidecar.
   */
  async consumeJoinToken(token: string, claimant: { publicKey: Buffer; inboundAddress: string }): Promise<{ spiffeId: string; labels: Labels; retry: boolean }> {
    const claim = { claimant: claimantOf(claimant.publicKey, claimant.inboundAddress), retryWithinMs: JOIN_TOKEN_RETRY_MS };
    const result = await this.#store.consumeJoinToken(hashToken(token), this.#now(), claim);
    if (!result.ok) throw new JoinTokenError(result.reason);
    return { spiffeId: result.spiffeId, labels: result.labels, retry: result.retry === true };
  }
}

/** How long after a join token is spent its claimant may spend it again (a lost answer, retried). */
export const JOIN_TOKEN_RETRY_MS = 5 * 60_000;

function claimantOf(publicKey: Buffer, inboundAddress: string): string {
  return createHash('sha256').update(publicKey).update('\n').update(inboundAddress).digest('hex');
}
