import { createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { combineAttestors } from './kubernetes-attestation.ts';
import { KubernetesTokenError, KubernetesTokenVerifier, loadKubernetesKeySet, type KubernetesIdentity } from './kubernetes-token.ts';
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
function jwt(s: Signer, claims: Record<string, unknown>, header: Record<string, unknown> = { alg: s.alg, kid: s.kid }): string {
  const enc = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${enc(header)}.${enc(claims)}`;
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
  let served: Signer[] = [rsa, ec];
  let fetches = 0;
  beforeAll(async () => {
    server = createServer((_req, res) => {
      fetches += 1;
      res.end(JSON.stringify(jwksOf(served)));
    });
    await listen(server, { host: '127.0.0.1', port: 0 });
    const keys = await loadKubernetesKeySet(`http://127.0.0.1:${boundPort(server)}/openid/v1/jwks`);
    verifier = new KubernetesTokenVerifier({ issuer: ISSUER, trustDomain: TD, keys });
  });
  afterAll(async () => closeServer(server));

  it('turns a valid token (RS256 or ES256) into spiffe://<td>/ns/<ns>/sa/<sa>', async () => {
    expect(await verifier.verify(jwt(rsa, podClaims()))).toBe(`spiffe://${TD}/ns/agents/sa/researcher`);
    expect(await verifier.verify(jwt(ec, podClaims({ aud: 'airlock' })))).toBe(`spiffe://${TD}/ns/agents/sa/researcher`);
  });

  it('tolerates a clock skew of 30 s, no more', async () => {
    const nowS = Math.floor(Date.now() / 1000);
    expect(await verifier.verify(jwt(rsa, podClaims({ exp: nowS - 10 })))).toBe(`spiffe://${TD}/ns/agents/sa/researcher`);
    expect(await verifier.verify(jwt(rsa, podClaims({ nbf: nowS + 10 })))).toBe(`spiffe://${TD}/ns/agents/sa/researcher`);
    await expect(verifier.verify(jwt(rsa, podClaims({ exp: nowS - 60 })))).rejects.toMatchObject({ reason: 'expired' });
    await expect(verifier.verify(jwt(rsa, podClaims({ nbf: nowS + 60 })))).rejects.toMatchObject({ reason: 'not_yet_valid' });
  });

  it('fetches the JWKS again for a key rotated in (unknown kid), at most once per 30 s', async () => {
    const rotated = rsaSigner('rsa-2');
    served = [rsa, ec, rotated];
    const before = fetches;
    // Within 30 s of the last fetch, an unknown kid is refused without a fetch.
    await expect(verifier.verify(jwt(rotated, podClaims()))).rejects.toMatchObject({ reason: 'unknown_key' });
    expect(fetches).toBe(before);
    afterCooldown();
    expect(await verifier.verify(jwt(rotated, podClaims()))).toBe(`spiffe://${TD}/ns/agents/sa/researcher`);
    expect(fetches).toBe(before + 1);
    // A flood of unknown kids right after costs no more fetches.
    for (const kid of ['x1', 'x2', 'x3']) await expect(verifier.verify(jwt(rsaSigner(kid), podClaims()))).rejects.toMatchObject({ reason: 'unknown_key' });
    expect(fetches).toBe(before + 1);
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

  afterEach(() => vi.useRealTimers());

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
    ['a token that names no key (no kid)', () => jwt(rsa, podClaims(), { alg: 'RS256' }), 'unknown_key'],
    // The key type is bound to the algorithm: an RS256 header never selects the EC key, nor ES256 the RSA one.
    ['an RS256 token naming the EC key', () => jwt(rsa, podClaims(), { alg: 'RS256', kid: ec.kid }), 'unknown_key'],
    ['an ES256 token naming the RSA key', () => jwt(ec, podClaims(), { alg: 'ES256', kid: rsa.kid }), 'unknown_key'],
    // Algorithm confusion: the RSA public key used as an HMAC secret.
    ['an HS256 token keyed with the public key', () => hmacWithPublicKey(rsa, podClaims()), 'bad_algorithm'],
    ['a PS256 token', () => jwt(rsa, podClaims(), { alg: 'PS256', kid: rsa.kid }), 'bad_algorithm'],
    ['a token without exp', () => jwt(rsa, podClaims({ exp: undefined })), 'expired'],
    ['not a JWT', () => 'not.a.jwt', 'malformed'],
  ])('refuses %s', async (_what, make, reason) => {
    await expect(verifier.verify(make())).rejects.toEqual(expect.objectContaining({ reason, code: 'AIRLOCK_ATTESTATION_FAILED' }) as KubernetesTokenError);
  });
});

describe('a JWKS file', () => {
  afterEach(() => vi.useRealTimers());

  it('is read again for a key rotated in, like a URL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-jwks-'));
    try {
      const file = join(dir, 'jwks.json');
      const [first, second] = [rsaSigner('file-1'), ecSigner('file-2')];
      writeFileSync(file, JSON.stringify(jwksOf([first])));
      const verifier = new KubernetesTokenVerifier({ issuer: ISSUER, trustDomain: TD, keys: await loadKubernetesKeySet(file) });
      expect(await verifier.verify(jwt(first, podClaims()))).toBe(`spiffe://${TD}/ns/agents/sa/researcher`);
      writeFileSync(file, JSON.stringify(jwksOf([first, second])));
      afterCooldown();
      expect(await verifier.verify(jwt(second, podClaims()))).toBe(`spiffe://${TD}/ns/agents/sa/researcher`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('that cannot be read, or holds no key, fails the start with a configuration error', async () => {
    await expect(loadKubernetesKeySet('/nonexistent/jwks.json')).rejects.toMatchObject({ code: 'AIRLOCK_CONFIG_INVALID' });
    const dir = mkdtempSync(join(tmpdir(), 'airlock-jwks-'));
    try {
      writeFileSync(join(dir, 'empty.json'), '{"keys":[]}');
      await expect(loadKubernetesKeySet(join(dir, 'empty.json'))).rejects.toMatchObject({ code: 'AIRLOCK_CONFIG_INVALID' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** The clock 31 s on (jose's JWKS cooldown is measured with Date.now()). */
function afterCooldown(): void {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(Date.now() + 31_000);
}

function jwksOf(signers: readonly Signer[]): { keys: Record<string, unknown>[] } {
  return { keys: signers.map((s) => ({ ...s.publicKey.export({ format: 'jwk' }), kid: s.kid, use: 'sig', alg: s.alg })) };
}

function hmacWithPublicKey(s: Signer, claims: Record<string, unknown>): string {
  const enc = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${enc({ alg: 'HS256', kid: s.kid })}.${enc(claims)}`;
  const secret = s.publicKey.export({ type: 'spki', format: 'pem' });
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

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
