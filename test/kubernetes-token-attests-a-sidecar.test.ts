import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnAirlock, waitReady, type AirlockProcess } from '../cli/src/demo/processes.ts';
import { KubernetesTokenVerifier, loadKubernetesKeySet } from '../control-plane/src/attestation/kubernetes-token.ts';
import { TokenReviewClient } from '../control-plane/src/attestation/token-review.ts';
import { startKubeApiServer, type KubeApiServer } from './support/kube-apiserver.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { viaProxy } from './support/proxy-client.ts';

// Everything here runs against a real kube-apiserver (test/support/kube-apiserver.ts): its
// TokenRequest mints the sidecars' tokens and its TokenReview judges them.
const NS = 'agents';
const POLICY = policyYaml(NS, ['planner', 'researcher'], [
  { name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] },
]);

let kube: KubeApiServer;

/** A pod (stored, never run: there is no kubelet) and a token bound to it, audience `airlock` unless told. */
async function podToken(serviceAccount: string, pod: string, audiences: readonly string[] = ['airlock']): Promise<string> {
  const created = await kube.json<{ metadata: { uid: string } }>('POST', `/api/v1/namespaces/${NS}/pods`, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: pod },
    spec: { serviceAccountName: serviceAccount, containers: [{ name: 'agent', image: 'example.invalid/agent:1' }] },
  });
  return kube.tokenRequest(NS, serviceAccount, { audiences, expirationSeconds: 600, boundPod: { name: pod, uid: created.metadata.uid } });
}

/**
 * The API server will not mint an expired token (TokenRequest refuses expirationSeconds < 600 and
 * --service-account-max-token-expiration < 1 h; Go ignores libfaketime, and the machine's clock is
 * shared). So this is one of its real tokens with iat/nbf/exp moved an hour back and signed again
 * with the API server's own signing key (the test generated it): a token the API server itself
 * would have issued an hour ago, which its TokenReview (and the JWKS check) must call expired.
 */
function expired(token: string): string {
  return signedAgain(token, kube.serviceAccountKeyPem, 3600 + 600);
}

/** A token's claims, iat/nbf/exp moved `secondsBack`, signed by `key` under the same header (kid). */
function signedAgain(token: string, key: KeyObject | string, secondsBack: number): string {
  const [header, payload] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8')) as Record<string, number>;
  for (const k of ['iat', 'nbf', 'exp'] as const) claims[k] = (claims[k] ?? 0) - secondsBack;
  const input = `${header ?? ''}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`;
}

beforeAll(async () => {
  kube = await startKubeApiServer();
  await kube.createNamespace(NS);
  await kube.createServiceAccount(NS, 'planner');
});
afterAll(async () => kube.stop());

describe('a sidecar attested by TokenReview against a real Kubernetes API server', () => {
  let mesh: Mesh;
  const sidecars: AirlockProcess[] = [];

  beforeAll(async () => {
    // The control plane's own identity: a ServiceAccount that RBAC lets create tokenreviews, nothing else.
    await kube.createNamespace('airlock-system');
    await kube.createServiceAccount('airlock-system', 'airlock-control-plane');
    await kube.json('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'airlock-tokenreview' },
      rules: [{ apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] }],
    });
    await kube.json('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'airlock-tokenreview' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'airlock-tokenreview' },
      subjects: [{ kind: 'ServiceAccount', namespace: 'airlock-system', name: 'airlock-control-plane' }],
    });
    const cpTokenFile = join(kube.dir, 'control-plane.token');
    writeFileSync(cpTokenFile, await kube.tokenRequest('airlock-system', 'airlock-control-plane', { audiences: [kube.issuer] }));
    mesh = await startMesh({
      agents: ['researcher'],
      policy: POLICY,
      trustDomain: 'k8s.test',
      controlPlaneArgs: ['--kubernetes-api-server', kube.url, '--kubernetes-api-ca-file', kube.caFile, '--kubernetes-api-token-file', cpTokenFile],
    });
  });
  afterAll(async () => {
    await Promise.all(sidecars.map((s) => s.stop()));
    await mesh.close();
  });

  function sidecar(name: string, token: string): AirlockProcess {
    const tokenFile = join(mesh.dir, `${name}.token`);
    writeFileSync(tokenFile, token);
    const p = spawnAirlock(name, [
      'sidecar', '--trust-domain', mesh.trustDomain, '--control-plane', `127.0.0.1:${mesh.grpcPort}`, '--ca-file', join(mesh.dataDir, 'trust-bundle.pem'),
      '--outbound-listen', '127.0.0.1:0', '--inbound-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--app-port', '9',
      '--kubernetes-token-file', tokenFile,
    ], { logFile: join(mesh.dir, `${name}.log`) });
    sidecars.push(p);
    return p;
  }

  /** The sidecar is refused an SVID: it says why, stays unready, and the control plane counts the reason. */
  async function expectRefused(name: string, token: string, reason: string, why: RegExp): Promise<void> {
    const p = sidecar(name, token);
    const failed = await p.logLine('cannot obtain an SVID');
    expect(JSON.stringify(failed)).toMatch(why);
    const admin = Number((await p.logLine('sidecar listening; obtaining an SVID')).admin);
    expect((await fetch(`http://127.0.0.1:${admin}/readyz`)).status).toBe(503);
    const metrics = await (await fetch(`http://127.0.0.1:${mesh.httpPort}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`airlock_ca_issuance_refused_total\\{[^}]*reason="${reason}"[^}]*\\} [1-9]`));
  }

  it('gets spiffe://<td>/ns/<ns>/sa/<sa> for a token the API server minted, and its agent calls as the policy says', async () => {
    const p = sidecar('planner', await podToken('planner', 'planner-0'));
    const listening = await p.logLine('sidecar listening; obtaining an SVID');
    await waitReady(p, `http://127.0.0.1:${Number(listening.admin)}/readyz`);
    expect((await p.logLine('holding an X.509-SVID')).spiffeId).toBe(`spiffe://k8s.test/ns/${NS}/sa/planner`);

    const outbound = Number(listening.outbound);
    const allowed = await viaProxy(outbound, 'GET', `http://researcher.${NS}/v1/search?q=k8s`);
    expect(allowed.status).toBe(200);
    expect(allowed.json<{ headers: Record<string, string> }>().headers['x-forwarded-client-cert']).toBe(
      `By=${mesh.agent('researcher').identity};URI=spiffe://k8s.test/ns/${NS}/sa/planner`,
    );
    const denied = await viaProxy(outbound, 'POST', `http://researcher.${NS}/v1/search`, { body: '{}' });
    expect(denied.status).toBe(403);
  });

  it('is refused with a token for another audience', async () => {
    await expectRefused('other-audience', await podToken('planner', 'planner-aud', [kube.issuer]), 'kubernetes_tokenreview_unauthenticated', /does not authenticate it: .*token audiences/);
  });

  it('is refused with an expired token', async () => {
    await expectRefused('expired', expired(await podToken('planner', 'planner-old')), 'kubernetes_tokenreview_unauthenticated', /does not authenticate it: .*token has expired/);
  });

  it('is refused once its ServiceAccount is deleted, and once its pod is', async () => {
    await kube.createServiceAccount(NS, 'short-lived');
    const saGone = await podToken('short-lived', 'short-lived-0');
    await kube.deleteServiceAccount(NS, 'short-lived');
    await expectRefused('sa-deleted', saGone, 'kubernetes_tokenreview_unauthenticated', /does not authenticate it: .*serviceaccounts \\"short-lived\\" not found/);

    const podGone = await podToken('planner', 'planner-gone');
    await kube.json('DELETE', `/api/v1/namespaces/${NS}/pods/planner-gone`);
    await expectRefused('pod-deleted', podGone, 'kubernetes_tokenreview_unauthenticated', /does not authenticate it: .*token has been invalidated/);
  });

  it('is refused with a token the cluster never issued (its claims, another key)', async () => {
    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    await expectRefused('forged', signedAgain(await podToken('planner', 'planner-forged'), stranger, 0), 'kubernetes_tokenreview_unauthenticated', /does not authenticate it: \[invalid bearer token/);
  });

  it('gets no answer (UNAVAILABLE, fail closed) when the control plane\'s bearer is unknown or lacks the RBAC to review', async () => {
    const token = await podToken('planner', 'planner-bearer');
    const review = async (bearer: string): Promise<unknown> => {
      const tokenFile = join(mesh.dir, `bearer-${bearer.length}.token`);
      writeFileSync(tokenFile, bearer);
      return new TokenReviewClient({ apiServer: kube.url, caFile: kube.caFile, tokenFile, trustDomain: 'k8s.test' }).review(token).catch((e: unknown) => e);
    };
    expect(await review('stolen-or-stale')).toMatchObject({ reason: 'tokenreview_unavailable', code: 'AIRLOCK_UPSTREAM_UNAVAILABLE', message: expect.stringMatching(/HTTP 401/) as unknown });
    // A service account the API server knows, but that no role lets create tokenreviews.
    await kube.createServiceAccount(NS, 'no-rbac');
    const unprivileged = await kube.tokenRequest(NS, 'no-rbac', { audiences: [kube.issuer] });
    expect(await review(unprivileged)).toMatchObject({ reason: 'tokenreview_unavailable', message: expect.stringMatching(/HTTP 403: check the control plane service account may create tokenreviews/) as unknown });
  });

  it('is refused with a token not bound to a pod', async () => {
    const unbound = await kube.tokenRequest(NS, 'planner', { audiences: ['airlock'], expirationSeconds: 600 });
    await expectRefused('unbound', unbound, 'kubernetes_not_pod_bound', /not bound to a pod/);
  });
});

describe('the offline JWKS check (jose) against tokens the real API server signs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-k8s-jwks-'));
  const jwksFile = join(dir, 'jwks.json');
  let controlPlane: AirlockProcess | undefined;
  let sidecarProcess: AirlockProcess | undefined;
  let verifier: KubernetesTokenVerifier;

  beforeAll(async () => {
    // The cluster's JWKS as an operator would copy it (it needs a credential: here the admin's).
    const jwks = await kube.request('GET', '/openid/v1/jwks');
    expect(jwks.status).toBe(200);
    writeFileSync(jwksFile, JSON.stringify(jwks.body));
    verifier = new KubernetesTokenVerifier({ issuer: kube.issuer, trustDomain: 'jwks.test', keys: await loadKubernetesKeySet(jwksFile) });
  });
  afterAll(async () => {
    await sidecarProcess?.stop();
    await controlPlane?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a control plane with kubernetesJwks and kubernetesIssuer gives a sidecar its SVID', async () => {
    const dataDir = join(dir, 'control-plane');
    controlPlane = spawnAirlock('control-plane (jwks)', [
      'control-plane', '--trust-domain', 'jwks.test', '--data-dir', dataDir, '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0',
      '--kubernetes-jwks', jwksFile, '--kubernetes-issuer', kube.issuer,
    ], { logFile: join(dir, 'control-plane.log') });
    const grpcPort = Number((await controlPlane.logLine('control plane ready')).grpcPort);
    const tokenFile = join(dir, 'planner.token');
    writeFileSync(tokenFile, await podToken('planner', 'planner-jwks'));
    sidecarProcess = spawnAirlock('sidecar (jwks)', [
      'sidecar', '--trust-domain', 'jwks.test', '--control-plane', `127.0.0.1:${grpcPort}`, '--ca-file', join(dataDir, 'trust-bundle.pem'),
      '--outbound-listen', '127.0.0.1:0', '--inbound-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--app-port', '9',
      '--kubernetes-token-file', tokenFile,
    ], { logFile: join(dir, 'sidecar.log') });
    const admin = Number((await sidecarProcess.logLine('sidecar listening; obtaining an SVID')).admin);
    await waitReady(sidecarProcess, `http://127.0.0.1:${admin}/readyz`);
    expect((await sidecarProcess.logLine('holding an X.509-SVID')).spiffeId).toBe(`spiffe://jwks.test/ns/${NS}/sa/planner`);
  });

  it('reads the identity and the pod from a token the API server minted', async () => {
    expect(await verifier.identify(await podToken('planner', 'planner-claims'))).toEqual({
      spiffeId: `spiffe://jwks.test/ns/${NS}/sa/planner`, namespace: NS, serviceAccount: 'planner', podName: 'planner-claims',
    });
  });

  it('refuses the API server\'s tokens for another audience, expired, or signed again by another key', async () => {
    const token = await podToken('planner', 'planner-refused');
    await expect(verifier.verify(await podToken('planner', 'planner-aud2', [kube.issuer]))).rejects.toMatchObject({ reason: 'wrong_audience' });
    await expect(verifier.verify(expired(token))).rejects.toMatchObject({ reason: 'expired' });
    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    await expect(verifier.verify(signedAgain(token, stranger, 0))).rejects.toMatchObject({ reason: 'bad_signature' });
  });
});
