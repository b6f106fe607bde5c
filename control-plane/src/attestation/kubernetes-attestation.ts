import { ConfigError, errorMessage } from '@airlock/common/errors';
import { labelValueProblem, type Labels } from '@airlock/common/labels';
import { KubernetesTokenError, KubernetesTokenVerifier, loadKubernetesKeySet, type KubernetesIdentity } from './kubernetes-token.ts';
import { TokenReviewClient, type TokenReviewOptions } from './token-review.ts';

/** Turns a projected service-account token into the SPIFFE ID it proves and its labels, or throws a KubernetesTokenError. */
export interface KubernetesAttestor {
  attest(token: string, nowMs: number): Promise<{ spiffeId: string; labels: Labels }>;
}

/**
 * The labels Kubernetes attestation gives an agent: its namespace, service account and (when the
 * token is bound to one) pod name. A value that is not a valid label value (a name over 63
 * characters) is left out rather than failing the attestation.
 */
export function kubernetesLabels(id: KubernetesIdentity): Labels {
  const labels: Record<string, string> = {};
  const add = (key: string, value: string | undefined): void => {
    if (value !== undefined && labelValueProblem(value) === undefined) labels[key] = value;
  };
  add('kubernetes.io/namespace', id.namespace);
  add('kubernetes.io/service-account', id.serviceAccount);
  add('kubernetes.io/pod-name', id.podName);
  return labels;
}

const JWKS_REFRESH_MS = 5 * 60_000;

/**
 * Offline check (JWKS), TokenReview, or both. With both, a token must pass both: the offline check
 * first (no network for a forged or expired token), then the TokenReview (is its pod still there?).
 */
export function combineAttestors(offline: KubernetesTokenVerifier | undefined, review: TokenReviewClient | undefined): KubernetesAttestor {
  return {
    async attest(token, nowMs) {
      const offlineId = await offline?.identify(token, nowMs);
      if (review === undefined) {
        if (offlineId === undefined) throw new KubernetesTokenError('not_configured', 'Kubernetes attestation is not configured on this control plane');
        return { spiffeId: offlineId.spiffeId, labels: kubernetesLabels(offlineId) };
      }
      const reviewed = await review.identify(token);
      if (offlineId !== undefined && offlineId.spiffeId !== reviewed.spiffeId) {
        throw new KubernetesTokenError('no_service_account', `the token claims ${offlineId.spiffeId} but the API server says ${reviewed.spiffeId}`);
      }
      return { spiffeId: reviewed.spiffeId, labels: kubernetesLabels(reviewed) };
    },
  };
}

/**
 * Loads the JWKS when one is configured (failing start if it cannot) and reloads it every few
 * minutes, so that a key removed by a rotation of the cluster stops verifying; a failed reload keeps
 * the keys held. A key added by a rotation is fetched as soon as a token names its kid.
 */
export async function startKubernetesAttestation(o: {
  jwks: string | undefined;
  issuer: string | undefined;
  tokenReview: Omit<TokenReviewOptions, 'trustDomain'> | undefined;
  trustDomain: string;
  onReloadError: (message: string) => void;
}): Promise<{ attestor: KubernetesAttestor; stop: () => void } | undefined> {
  if (o.jwks === undefined && o.tokenReview === undefined) return undefined;
  const review = o.tokenReview === undefined ? undefined : new TokenReviewClient({ ...o.tokenReview, trustDomain: o.trustDomain });
  if (o.tokenReview !== undefined && !/^https:\/\//.test(o.tokenReview.apiServer)) {
    throw new ConfigError([`kubernetesApiServer must be an https:// URL (got ${o.tokenReview.apiServer})`]);
  }
  if (o.jwks === undefined) return { attestor: combineAttestors(undefined, review), stop: () => undefined };
  const jwks = o.jwks;
  if (o.issuer === undefined) throw new ConfigError(['kubernetesIssuer is required with kubernetesJwks (the `iss` of the cluster service-account tokens)']);
  const keys = await loadKubernetesKeySet(jwks);
  const timer = setInterval(() => {
    keys.reload().catch((err: unknown) => o.onReloadError(errorMessage(err)));
  }, JWKS_REFRESH_MS);
  timer.unref();
  const offline = new KubernetesTokenVerifier({ issuer: o.issuer, trustDomain: o.trustDomain, keys });
  return { attestor: combineAttestors(offline, review), stop: () => clearInterval(timer) };
}
