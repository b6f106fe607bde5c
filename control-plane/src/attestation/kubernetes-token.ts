import { createPublicKey, verify, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { formatSpiffeId } from '@airlock/common/spiffe';

export const KUBERNETES_AUDIENCE = 'airlock';
// Clocks of the API server and the control plane may differ a little.
const LEEWAY_S = 30;
const ALGORITHMS: Readonly<Record<string, { hash: string; dsa?: 'ieee-p1363' }>> = {
  RS256: { hash: 'sha256' },
  ES256: { hash: 'sha256', dsa: 'ieee-p1363' },
};

/** Why a token was refused; `reason` is stable for metrics and audit lines. */
export class KubernetesTokenError extends AirlockError {
  readonly reason: string;

  constructor(reason: string, message: string, code: ErrorCode = ErrorCode.Attestation) {
    super(code, `kubernetes service account token refused: ${message}`);
    this.name = 'KubernetesTokenError';
    this.reason = reason;
  }
}

/** The cluster's service-account signing keys: a JWKS from a file or an http(s) URL. */
export async function loadJwks(source: string): Promise<Map<string, KeyObject>> {
  let text: string;
  try {
    if (/^https?:\/\//.test(source)) {
      const res = await fetch(source, { signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      text = await res.text();
    } else {
      text = await readFile(source, 'utf8');
    }
    const jwks = JSON.parse(text) as { keys?: (JsonWebKey & { kid?: string })[] };
    const keys = new Map<string, KeyObject>();
    for (const jwk of jwks.keys ?? []) {
      if (typeof jwk.kid !== 'string' || (jwk.use !== undefined && jwk.use !== 'sig')) continue;
      keys.set(jwk.kid, createPublicKey({ key: jwk, format: 'jwk' }));
    }
    if (keys.size === 0) throw new Error('no signing key with a "kid"');
    return keys;
  } catch (err) {
    throw new AirlockError(ErrorCode.Config, `cannot load the Kubernetes JWKS from ${source}: ${errorMessage(err)}`, { cause: err });
  }
}

function part(segment: string | undefined, what: string): Record<string, unknown> {
  try {
    const v = JSON.parse(Buffer.from(segment ?? '', 'base64url').toString('utf8')) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // fall through
  }
  throw new KubernetesTokenError('malformed', `its ${what} is not a JSON object`);
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
 * Verifies a projected service-account token offline: signature by a key of the JWKS, issuer,
 * audience `airlock`, exp/nbf, and the namespace/service-account claims, which give the SPIFFE ID.
 * Whether the pod still exists needs the TokenReview API and is not checked here.
 */
export class KubernetesTokenVerifier {
  readonly #o: { issuer: string; trustDomain: string; keys: () => ReadonlyMap<string, KeyObject> };

  constructor(o: { issuer: string; trustDomain: string; keys: () => ReadonlyMap<string, KeyObject> }) {
    this.#o = o;
  }

  /** The SPIFFE ID the token proves, or a KubernetesTokenError. */
  verify(token: string, nowMs = Date.now()): string {
    return this.identify(token, nowMs).spiffeId;
  }

  /** What the token proves: the SPIFFE ID and the pod it is bound to (when it names one). */
  identify(token: string, nowMs = Date.now()): KubernetesIdentity {
    const segments = token.split('.');
    if (segments.length !== 3) throw new KubernetesTokenError('malformed', 'not a signed JWT');
    const header = part(segments[0], 'header');
    const alg = ALGORITHMS[String(header.alg)];
    if (alg === undefined) throw new KubernetesTokenError('bad_algorithm', `algorithm ${String(header.alg)} is not accepted (RS256, ES256)`);
    const key = typeof header.kid === 'string' ? this.#o.keys().get(header.kid) : undefined;
    if (key === undefined) throw new KubernetesTokenError('unknown_key', `it is signed by an unknown key (kid ${String(header.kid)})`);
    const signed = Buffer.from(`${segments[0]}.${segments[1]}`);
    const signature = Buffer.from(segments[2] ?? '', 'base64url');
    if (!verify(alg.hash, signed, alg.dsa === undefined ? key : { key, dsaEncoding: alg.dsa }, signature)) {
      throw new KubernetesTokenError('bad_signature', 'its signature does not verify');
    }
    const claims = part(segments[1], 'payload');
    if (claims.iss !== this.#o.issuer) throw new KubernetesTokenError('wrong_issuer', `issuer ${String(claims.iss)} is not ${this.#o.issuer}`);
    const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!aud.includes(KUBERNETES_AUDIENCE)) throw new KubernetesTokenError('wrong_audience', `its audience is not "${KUBERNETES_AUDIENCE}"`);
    const now = nowMs / 1000;
    if (typeof claims.exp !== 'number' || claims.exp + LEEWAY_S <= now) throw new KubernetesTokenError('expired', 'it has expired (or has no exp)');
    if (typeof claims.nbf === 'number' && claims.nbf - LEEWAY_S > now) throw new KubernetesTokenError('not_yet_valid', 'it is not valid yet (nbf)');
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
