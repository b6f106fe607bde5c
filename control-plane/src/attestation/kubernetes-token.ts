import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRemoteJWKSet, customFetch, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { formatSpiffeId } from '@airlock/common/spiffe';

export const KUBERNETES_AUDIENCE = 'airlock';
// Clocks of the API server and the control plane may differ a little.
const LEEWAY_S = 30;
// What the API server signs with (--service-account-signing-key-file: RSA or P-256). jose binds each
// to its key type (an RS256 header never selects an EC key, HS256 is never accepted).
const ALGORITHMS = ['RS256', 'ES256'];
// A token with an unknown kid (a key rotated in) refetches the JWKS, at most this often.
const JWKS_COOLDOWN_MS = 30_000;
const JWKS_TIMEOUT_MS = 10_000;

/** Why a token was refused; `reason` is stable for metrics and audit lines. */
export class KubernetesTokenError extends AirlockError {
  readonly reason: string;

  constructor(reason: string, message: string, code: ErrorCode = ErrorCode.Attestation) {
    super(code, `kubernetes service account token refused: ${message}`);
    this.name = 'KubernetesTokenError';
    this.reason = reason;
  }
}

/** The cluster's service-account signing keys (a JWKS from a file or an http(s) URL), refetched when a token names an unknown kid. */
export type KubernetesKeySet = ReturnType<typeof createRemoteJWKSet>;

/**
 * A file is read through the same jose key set as a URL, so both get the same kid rotation and
 * cooldown. The keys are held until reload() succeeds (cacheMaxAge Infinity): the caller reloads
 * on a timer, and a failed reload keeps what is held.
 */
export function kubernetesKeySet(source: string): KubernetesKeySet {
  const isUrl = /^https?:\/\//.test(source);
  return createRemoteJWKSet(isUrl ? new URL(source) : pathToFileURL(resolve(source)), {
    cooldownDuration: JWKS_COOLDOWN_MS,
    cacheMaxAge: Infinity,
    timeoutDuration: JWKS_TIMEOUT_MS,
    ...(isUrl ? {} : { [customFetch]: async () => new Response(await readFile(source), { status: 200 }) }),
  });
}

/** Loads the key set once (at start: a JWKS that cannot be read is a configuration error). */
export async function loadKubernetesKeySet(source: string): Promise<KubernetesKeySet> {
  const keys = kubernetesKeySet(source);
  try {
    await keys.reload();
    if ((keys.jwks()?.keys ?? []).length === 0) throw new Error('no key in it');
  } catch (err) {
    throw new AirlockError(ErrorCode.Config, `cannot load the Kubernetes JWKS from ${source}: ${errorMessage(err)}`, { cause: err });
  }
  return keys;
}

/** A jose failure as the stable reason it gives a refusal. */
function refusal(err: unknown): KubernetesTokenError {
  if (err instanceof KubernetesTokenError) return err;
  if (err instanceof errors.JWTExpired) return new KubernetesTokenError('expired', 'it has expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    const byClaim: Readonly<Record<string, [string, string]>> = {
      iss: ['wrong_issuer', `issuer ${String(err.payload.iss)} is not the cluster's`],
      aud: ['wrong_audience', `its audience is not "${KUBERNETES_AUDIENCE}"`],
      nbf: ['not_yet_valid', 'it is not valid yet (nbf)'],
      exp: ['expired', 'it has no exp'],
    };
    const [reason, message] = byClaim[err.claim] ?? ['malformed', `claim ${err.claim}: ${err.message}`];
    return new KubernetesTokenError(reason, message);
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) {
    return new KubernetesTokenError('bad_algorithm', `its algorithm is not accepted (${ALGORITHMS.join(', ')})`);
  }
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    return new KubernetesTokenError('unknown_key', 'it is signed by an unknown key (no key of the JWKS has its kid and algorithm)');
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return new KubernetesTokenError('bad_signature', 'its signature does not verify');
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return new KubernetesTokenError('malformed', `not a valid signed JWT: ${err.message}`);
  // The JWKS could not be refetched for an unknown kid: no answer, not a verdict (the sidecar retries).
  return new KubernetesTokenError('jwks_unavailable', `cannot fetch the cluster's JWKS: ${errorMessage(err)}`, ErrorCode.UpstreamUnavailable);
}

/** What a service-account token proves. */
export interface KubernetesIdentity {
  readonly spiffeId: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The pod the token is bound to, when it names one. */
  readonly podName: string | undefined;
}

/**
 * Verifies a projected service-account token offline (jose): signature by a key of the JWKS (RS256
 * or ES256, the key found by kid), issuer, audience `airlock`, exp/nbf with a small clock tolerance,
 * and the namespace/service-account claims, which give the SPIFFE ID. Whether the pod still exists
 * needs the TokenReview API and is not checked here.
 */
export class KubernetesTokenVerifier {
  readonly #o: { issuer: string; trustDomain: string; keys: JWTVerifyGetKey };

  constructor(o: { issuer: string; trustDomain: string; keys: JWTVerifyGetKey }) {
    this.#o = o;
  }

  /** The SPIFFE ID the token proves, or a KubernetesTokenError. */
  async verify(token: string, nowMs = Date.now()): Promise<string> {
    return (await this.identify(token, nowMs)).spiffeId;
  }

  /** What the token proves: the SPIFFE ID and the pod it is bound to (when it names one). */
  async identify(token: string, nowMs = Date.now()): Promise<KubernetesIdentity> {
    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(
        token,
        (header, jws) => {
          // The API server always names its key; a token that does not is not one of its.
          if (typeof header.kid !== 'string') throw new KubernetesTokenError('unknown_key', 'it names no key (no kid)');
          return this.#o.keys(header, jws);
        },
        { issuer: this.#o.issuer, audience: KUBERNETES_AUDIENCE, algorithms: ALGORITHMS, clockTolerance: LEEWAY_S, currentDate: new Date(nowMs), requiredClaims: ['exp'] },
      ));
    } catch (err) {
      throw refusal(err);
    }
    const k8s = claims['kubernetes.io'] as { namespace?: unknown; serviceaccount?: { name?: unknown }; pod?: { name?: unknown } } | undefined;
    const namespace = k8s?.namespace;
    const serviceAccount = k8s?.serviceaccount?.name;
    if (typeof namespace !== 'string' || typeof serviceAccount !== 'string') {
      throw new KubernetesTokenError('no_service_account', 'it names no namespace and service account (kubernetes.io claims)');
    }
    const expectedSub = `system:serviceaccount:${namespace}:${serviceAccount}`;
    if (claims.sub !== expectedSub) throw new KubernetesTokenError('no_service_account', `its subject is not ${expectedSub}`);
    const podName = typeof k8s?.pod?.name === 'string' ? k8s.pod.name : undefined;
    try {
      return { spiffeId: formatSpiffeId(this.#o.trustDomain, namespace, serviceAccount), namespace, serviceAccount, podName };
    } catch (err) {
      throw new KubernetesTokenError('no_service_account', errorMessage(err));
    }
  }
}
