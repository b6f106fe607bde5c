import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { combineAttestors } from './kubernetes-attestation.ts';
import { KubernetesTokenError, KubernetesTokenVerifier, loadJwks, type KubernetesIdentity } from './kubernetes-token.ts';
import type { TokenReviewClient } from './token-review.ts';

const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const TD = 'airlock.test';

interface Signer {
  readonly kid: string;
  readonly alg: 'RS256' | 'ES256';
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

function rsaSigner(kid: string): Signer {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid, alg: 'RS256', privateKey, publicKey };
}

function ecSigner(kid: string): Signer {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid, alg: 'ES256', privateKey, publicKey };
}

/** A JWT the way the API server signs a projected service-account token. */
function jwt(s: Signer, claims: Record<string, unknown>): string {
  const enc = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${enc({ alg: s.alg, kid: s.kid, typ: 'JWT' })}.${enc(claims)}`;
  const sig = sign('sha256', Buffer.from(input), s.alg === 'ES256' ? { key: s.privateKey, dsaEncoding: 'ieee-p1363' } : s.privateKey);
  return `${input}.${sig.toString('base64url')}`;
}

function podClaims(over: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    iss: ISSUER,
    aud: ['airlock'],
    sub: 'system:serviceaccount:agents:researcher',
    iat: now,
    nbf: now,
    exp: now + 600,
    'kubernetes.io': { namespace: 'agents', serviceaccount: { name: 'researcher', uid: 'u1' }, pod: { name: 'researcher-0', uid: 'p1' } },
    ...over,
  };
}

describe('Kubernetes service-account token attestation (JWKS served on loopback)', () => {
  const rsa = rsaSigner('rsa-1');
  const ec = ecSigner('ec-1');
  const stranger = rsaSigner('rsa-1'); // same kid, another key
  let server: Server;
  let verifier: KubernetesTokenVerifier;
  beforeAll(async () => {
    const jwks = { keys: [rsa, ec].map((s) => ({ ...s.publicKey.export({ format: 'jwk' }), kid: s.kid, use: 'sig', alg: s.alg })) };
    server = createServer((_req, res) => res.end(JSON.stringify(jwks)));
    await listen(server, { host: '127.0.0.1', port: 0 });
    const keys = await loadJwks(`http://127.0.0.1:${boundPort(server)}/openid/v1/jwks`);
    verifier = new KubernetesTokenVerifier({ issuer: ISSUER, trustDomain: TD, keys: () => keys });
  });
  afterAll(async () => closeServer(server));

  it('turns a valid token (RS256 or ES256) into spiffe://<td>/ns/<ns>/sa/<sa>', () => {
    expect(verifier.verify(jwt(rsa, podClaims()))).toBe(`spiffe://${TD}/ns/agents/sa/researcher`);
    expect(verifier.verify(jwt(ec, podClaims({ aud: 'airlock' })))).toBe(`spiffe://${TD}/ns/agents/sa/researcher`);
  });

  it('gives the agent labels for its namespace, service account and pod (when the token names one)', async () => {
    const attestor = combineAttestors(verifier, undefined);
    expect(await attestor.attest(jwt(rsa, podClaims()), Date.now())).toEqual({
      spiffeId: `spiffe://${TD}/ns/agents/sa/researcher`,
      labels: { 'kubernetes.io/namespace': 'agents', 'kubernetes.io/service-account': 'researcher', 'kubernetes.io/pod-name': 'researcher-0' },
    });
    const noPod = podClaims({ 'kubernetes.io': { namespace: 'agents', serviceaccount: { name: 'researcher', uid: 'u1' } } });
    expect((await attestor.attest(jwt(rsa, noPod), Date.now())).labels).toEqual({ 'kubernetes.io/namespace': 'agents', 'kubernetes.io/service-account': 'researcher' });
  });

  // README: with both kubernetesJwks and kubernetesApiServer, a token must pass both, offline first.
  it('with a TokenReview too, needs both to pass, and spends no review on a token the offline check refuses', async () => {
    const reviewed: string[] = [];
    const review = (answer: () => Promise<KubernetesIdentity>): TokenReviewClient =>
      ({ identify: (token: string) => (reviewed.push(token), answer()) }) as unknown as TokenReviewClient;
    const researcher: KubernetesIdentity = { spiffeId: `spiffe://${TD}/ns/agents/sa/researcher`, namespace: 'agents', serviceAccount: 'researcher', podName: 'researcher-0' };

    const forged = jwt(stranger, podClaims());
    await expect(combineAttestors(verifier, review(() => Promise.resolve(researcher))).attest(forged, Date.now())).rejects.toMatchObject({ reason: 'bad_signature' });
    expect(reviewed).toEqual([]);

    const valid = jwt(rsa, podClaims());
    const podGone = review(() => Promise.reject(new KubernetesTokenError('tokenreview_unauthenticated', 'pod deleted')));
    await expect(combineAttestors(verifier, podGone).attest(valid, Date.now())).rejects.toMatchObject({ reason: 'tokenreview_unauthenticated' });
    const other = review(() => Promise.resolve({ ...researcher, spiffeId: `spiffe://${TD}/ns/agents/sa/planner`, serviceAccount: 'planner' }));
    await expect(combineAttestors(verifier, other).attest(valid, Date.now())).rejects.toMatchObject({ reason: 'no_service_account' });
    expect(reviewed).toEqual([valid, valid]);
    expect(await combineAttestors(verifier, review(() => Promise.resolve(researcher))).attest(valid, Date.now())).toMatchObject({ spiffeId: researcher.spiffeId });
  });

  const now = Math.floor(Date.now() / 1000);
  it.each([
    ['another audience', () => jwt(rsa, podClaims({ aud: ['https://kubernetes.default.svc'] })), 'wrong_audience'],
    ['an expired token', () => jwt(rsa, podClaims({ exp: now - 3600 })), 'expired'],
    ['a token not valid yet', () => jwt(rsa, podClaims({ nbf: now + 3600 })), 'not_yet_valid'],
    ['a token from another issuer', () => jwt(rsa, podClaims({ iss: 'https://evil.example' })), 'wrong_issuer'],
    ['a token signed by an unknown key', () => jwt(stranger, podClaims()), 'bad_signature'],
    ['a token with an unknown kid', () => jwt(rsaSigner('other'), podClaims()), 'unknown_key'],
    ['a token whose claims were edited', () => tamper(jwt(rsa, podClaims())), 'bad_signature'],
    ['an unsigned token (alg none)', () => unsigned(podClaims()), 'bad_algorithm'],
    ['a token without the service account', () => jwt(rsa, podClaims({ 'kubernetes.io': { namespace: 'agents' } })), 'no_service_account'],
    ['a token whose subject disagrees', () => jwt(rsa, podClaims({ sub: 'system:serviceaccount:kube-system:admin' })), 'no_service_account'],
  ])('refuses %s', (_what, make, reason) => {
    expect(() => verifier.verify(make())).toThrow(expect.objectContaining({ reason, code: 'AIRLOCK_ATTESTATION_FAILED' }) as KubernetesTokenError);
  });
});

function tamper(token: string): string {
  const [h, p, s] = token.split('.');
  const claims = JSON.parse(Buffer.from(p ?? '', 'base64url').toString()) as Record<string, unknown>;
  claims['kubernetes.io'] = { namespace: 'kube-system', serviceaccount: { name: 'admin' } };
  claims.sub = 'system:serviceaccount:kube-system:admin';
  return `${h ?? ''}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s ?? ''}`;
}

function unsigned(claims: Record<string, unknown>): string {
  const enc = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${enc({ alg: 'none', kid: 'rsa-1' })}.${enc(claims)}.`;
}
