import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { ErrorCode, errorMessage } from '@airlock/common/errors';
import { formatSpiffeId } from '@airlock/common/spiffe';
import { KUBERNETES_AUDIENCE, KubernetesTokenError, type KubernetesIdentity } from './kubernetes-token.ts';

export const TOKEN_REVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
// The extra values the service-account authenticator sets for a pod-bound token.
export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';
const MAX_RESPONSE_BYTES = 1 << 20;
const DEFAULT_TIMEOUT_MS = 5000;

export interface TokenReviewOptions {
  /** https URL of the API server, e.g. https://kubernetes.default.svc. */
  readonly apiServer: string;
  /** PEM bundle the API server's serving certificate must chain to. */
  readonly caFile: string;
  /** The control plane's own service-account token, sent as the bearer (re-read per review: the kubelet rotates it). */
  readonly tokenFile: string;
  readonly trustDomain: string;
  readonly timeoutMs?: number;
}

/** The part of TokenReviewStatus (authentication.k8s.io/v1) that decides. */
interface TokenReviewStatus {
  readonly authenticated?: boolean;
  readonly error?: string;
  readonly audiences?: readonly string[];
  readonly user?: { readonly username?: string; readonly extra?: Readonly<Record<string, readonly string[]>> };
}

function unavailable(apiServer: string, why: string): KubernetesTokenError {
  return new KubernetesTokenError(
    'tokenreview_unavailable',
    `the Kubernetes API server ${apiServer} gave no TokenReview answer (${why}); refused until it does (fail closed)`,
    ErrorCode.UpstreamUnavailable,
  );
}

/**
 * Asks the API server whether a projected service-account token is valid now (TokenReview), which
 * unlike the offline JWKS check also says whether the pod it is bound to still exists.
 */
export class TokenReviewClient {
  readonly #o: TokenReviewOptions;

  constructor(o: TokenReviewOptions) {
    this.#o = o;
  }

  /** The SPIFFE ID the token proves, or a KubernetesTokenError (UNAVAILABLE when the API server gave no answer). */
  async review(token: string): Promise<string> {
    return (await this.identify(token)).spiffeId;
  }

  /** What the token proves, with the pod it is bound to, or a KubernetesTokenError. */
  async identify(token: string): Promise<KubernetesIdentity> {
    const status = await this.#post(token);
    if (status.authenticated !== true) {
      // What the API server says for a token of a deleted pod, an expired one, or one for another audience.
      throw new KubernetesTokenError('tokenreview_unauthenticated', `the API server does not authenticate it: ${status.error ?? 'no reason given'}`);
    }
    // An API server that ignores spec.audiences answers for its own audience: not ours.
    if (!(status.audiences ?? []).includes(KUBERNETES_AUDIENCE)) {
      throw new KubernetesTokenError('wrong_audience', `the review does not confirm the audience "${KUBERNETES_AUDIENCE}" (got ${JSON.stringify(status.audiences ?? [])})`);
    }
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(status.user?.username ?? '');
    if (m?.[1] === undefined || m[2] === undefined) {
      throw new KubernetesTokenError('no_service_account', `it authenticates ${String(status.user?.username)}, not a service account`);
    }
    const extra = status.user?.extra ?? {};
    // Only a pod-bound token dies with its pod; a long-lived secret token would outlive it.
    if (extra[POD_NAME_EXTRA]?.[0] === undefined || extra[POD_UID_EXTRA]?.[0] === undefined) {
      throw new KubernetesTokenError('not_pod_bound', `it is not bound to a pod (no ${POD_NAME_EXTRA} / ${POD_UID_EXTRA} in the review)`);
    }
    try {
      return { spiffeId: formatSpiffeId(this.#o.trustDomain, m[1], m[2]), namespace: m[1], serviceAccount: m[2], podName: extra[POD_NAME_EXTRA][0] };
    } catch (err) {
      throw new KubernetesTokenError('no_service_account', errorMessage(err));
    }
  }

  async #post(token: string): Promise<TokenReviewStatus> {
    const { apiServer } = this.#o;
    let ca: string;
    let bearer: string;
    try {
      [ca, bearer] = await Promise.all([readFile(this.#o.caFile, 'utf8'), readFile(this.#o.tokenFile, 'utf8')]);
    } catch (err) {
      throw unavailable(apiServer, `cannot read the API server CA or the control plane's token: ${errorMessage(err)}`);
    }
    const body = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [KUBERNETES_AUDIENCE] } });
    const { statusCode, text } = await new Promise<{ statusCode: number; text: string }>((resolve, reject) => {
      const req = request(
        `${apiServer.replace(/\/+$/, '')}${TOKEN_REVIEW_PATH}`,
        {
          method: 'POST',
          ca,
          agent: false,
          signal: AbortSignal.timeout(this.#o.timeoutMs ?? DEFAULT_TIMEOUT_MS),
          headers: { authorization: `Bearer ${bearer.trim()}`, 'content-type': 'application/json', accept: 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_RESPONSE_BYTES) req.destroy(new Error('response too large'));
            else chunks.push(c);
          });
          res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    }).catch((err: unknown) => {
      throw unavailable(apiServer, errorMessage(err));
    });
    if (statusCode !== 201 && statusCode !== 200) {
      // 401/403: the control plane's token, or its RBAC (create tokenreviews), is wrong.
      throw unavailable(apiServer, `HTTP ${statusCode}${statusCode === 401 || statusCode === 403 ? ': check the control plane service account may create tokenreviews' : ''}`);
    }
    try {
      const review = JSON.parse(text) as { status?: TokenReviewStatus };
      return review.status ?? {};
    } catch {
      throw unavailable(apiServer, 'the answer is not JSON');
    }
  }
}
