// The sidecar injection webhook, end to end: a real control plane (`airlock control-plane` with
// injectionListen and injectionConfigFile) is sent AdmissionReview v1 JSON over HTTPS, as the
// Kubernetes API server sends it, with the server certificate verified against the Airlock CA under
// the Service name from serverDnsNames; the returned JSON Patch is applied to the pod and the stored
// pod's fields are asserted. Then a sidecar is started from the injected container's own env (what
// the kubelet would run; the projected token written by hand) and obtains its SVID. Hostile and
// malformed requests are answered as the README says, and every request is counted.
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { spawnAirlock, waitReady, type AirlockProcess } from '../cli/src/demo/processes.ts';
import { applyPatch } from '../control-plane/src/testing/json-patch.ts';
import { freePort } from './support/ports.ts';
import { rawHttp } from './support/raw-http.ts';

const TD = 'inject.test';
const SERVICE = 'airlock-control-plane.airlock-system.svc';
const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const IMAGE = 'ghcr.io/airlock-dev/airlock:0.1.0';
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

interface EnvVar { name: string; value?: string; valueFrom?: unknown }
interface Container { name: string; env?: EnvVar[]; [k: string]: unknown }
interface Pod {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; labels?: Record<string, string>; annotations?: Record<string, string>; [k: string]: unknown };
  spec: { containers: Container[]; initContainers?: Container[]; volumes?: Record<string, unknown>[]; [k: string]: unknown };
}
interface ReviewOut { apiVersion: string; kind: string; response: { uid: string; allowed: boolean; patchType?: string; patch?: string; warnings?: string[]; status?: { code: number; message: string } } }

/** A pod as the API server hands it to mutating webhooks (defaults filled in, service account set). */
function agentPod(o: { labels?: Record<string, string>; annotations?: Record<string, string> } = {}): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'researcher-0', namespace: 'agents', labels: { app: 'researcher', ...o.labels }, ...(o.annotations === undefined ? {} : { annotations: o.annotations }) },
    spec: {
      serviceAccountName: 'researcher',
      restartPolicy: 'Always',
      dnsPolicy: 'ClusterFirst',
      terminationGracePeriodSeconds: 30,
      containers: [{ name: 'agent', image: 'agent:1', imagePullPolicy: 'IfNotPresent', ports: [{ containerPort: 8000, protocol: 'TCP' }], env: [{ name: 'MODEL', value: 'gpt' }], resources: {}, terminationMessagePath: '/dev/termination-log', terminationMessagePolicy: 'File' }],
      volumes: [{ name: 'kube-api-access-x1', projected: { sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: 'token' } }] } }],
    },
  };
}

function review(object: unknown, uid = 'c5ed6c1a-1f3e-4a55-9f5b-1d0e0e0e0e01'): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'agents',
      operation: 'CREATE',
      userInfo: { username: 'system:admin', groups: ['system:masters', 'system:authenticated'] },
      object,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}

/** A projected service-account token as the API server would sign it for the pod. */
function saToken(): string {
  const now = Math.floor(Date.now() / 1000);
  const enc = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const claims = { iss: ISSUER, aud: ['airlock'], sub: 'system:serviceaccount:agents:researcher', iat: now, nbf: now, exp: now + 600, 'kubernetes.io': { namespace: 'agents', serviceaccount: { name: 'researcher', uid: 'u1' }, pod: { name: 'researcher-0', uid: 'p1' } } };
  const input = `${enc({ alg: 'RS256', kid: 'k1', typ: 'JWT' })}.${enc(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
}

describe('the sidecar injection webhook of a real control plane', () => {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-inject-'));
  const dataDir = join(dir, 'control-plane');
  const processes: AirlockProcess[] = [];
  let jwks: Server;
  let grpcPort = 0;
  let httpPort = 0;
  let injectionPort = 0;
  let caPem = '';

  /** POSTs over HTTPS, verifying the server as the API server does: the Airlock CA, the Service name. */
  function post(body: string | Buffer, o: { path?: string; method?: string; contentType?: string } = {}): Promise<{ status: number; body: string; protocol: string | null }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        { host: '127.0.0.1', port: injectionPort, servername: SERVICE, ca: caPem, method: o.method ?? 'POST', path: o.path ?? '/inject', headers: { 'content-type': o.contentType ?? 'application/json' }, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), protocol: res.socket instanceof TLSSocket ? res.socket.getProtocol() : null }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  async function admitted(object: unknown): Promise<ReviewOut['response']> {
    const res = await post(JSON.stringify(review(object)));
    expect(res.status).toBe(200);
    const out = JSON.parse(res.body) as ReviewOut;
    expect(out).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'c5ed6c1a-1f3e-4a55-9f5b-1d0e0e0e0e01' } });
    return out.response;
  }

  function patched(pod: Pod, response: ReviewOut['response']): Pod {
    expect(response.patchType).toBe('JSONPatch');
    return applyPatch(pod, JSON.parse(Buffer.from(response.patch ?? '', 'base64').toString('utf8')) as { op: string; path: string; value?: unknown }[]);
  }

  beforeAll(async () => {
    jwks = createServer((_req, res) => res.end(JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', use: 'sig', alg: 'RS256' }] })));
    await listen(jwks, { host: '127.0.0.1', port: 0 });
    [grpcPort, httpPort, injectionPort] = [await freePort(), await freePort(), await freePort()];
    const settings = join(dir, 'injection.yaml');
    writeFileSync(settings, [
      `image: ${IMAGE}`,
      `controlPlane: 127.0.0.1:${grpcPort}`,
      `trustDomain: ${TD}`,
      'tokenExpirationSeconds: 600',
      'resources: { requests: { cpu: 50m, memory: 64Mi }, limits: { memory: 256Mi } }',
      '',
    ].join('\n'));
    const cp = spawnAirlock('control-plane', [
      'control-plane', '--trust-domain', TD, '--data-dir', dataDir,
      '--grpc-listen', `127.0.0.1:${grpcPort}`, '--http-listen', `127.0.0.1:${httpPort}`,
      '--injection-listen', `127.0.0.1:${injectionPort}`, '--injection-config-file', settings, '--server-dns-names', SERVICE,
      '--kubernetes-jwks', `http://127.0.0.1:${boundPort(jwks)}/openid/v1/jwks`, '--kubernetes-issuer', ISSUER,
    ], { logFile: join(dir, 'control-plane.log') });
    processes.push(cp);
    expect(Number((await cp.logLine('control plane ready')).injectionPort)).toBe(injectionPort);
    caPem = readFileSync(join(dataDir, 'trust-bundle.pem'), 'utf8');
  });

  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await closeServer(jwks);
    rmSync(dir, { recursive: true, force: true });
  });

  it('injects a pod over TLS 1.3; the stored pod has the native sidecar, token volume, proxy env and marker', async () => {
    const pod = agentPod();
    const response = await admitted(pod);
    expect(response.allowed).toBe(true);
    const out = patched(pod, response);
    expect(out.metadata.annotations).toEqual({ 'airlock.dev/injected': 'true' });
    expect(out.spec.initContainers?.map((c) => c.name)).toEqual(['airlock-sidecar']);
    const sidecar = out.spec.initContainers?.[0];
    expect(sidecar).toMatchObject({ image: IMAGE, restartPolicy: 'Always', args: ['sidecar'], startupProbe: { httpGet: { path: '/readyz', port: 15020 } }, securityContext: { runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } } });
    const env = Object.fromEntries((sidecar?.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({ AIRLOCK_TRUST_DOMAIN: TD, AIRLOCK_CONTROL_PLANE: `127.0.0.1:${grpcPort}`, AIRLOCK_CA_PEM: caPem, AIRLOCK_APP_PORT: '8000' });
    expect(out.spec.volumes?.map((v) => v.name)).toEqual(['kube-api-access-x1', 'airlock-token', 'airlock-egress-ca']);
    expect(out.spec.volumes?.[1]).toEqual({ name: 'airlock-token', projected: { sources: [{ serviceAccountToken: { audience: 'airlock', expirationSeconds: 600, path: 'airlock-token' } }] } });
    const agentEnv = out.spec.containers[0]?.env ?? [];
    expect(agentEnv[0]).toEqual({ name: 'MODEL', value: 'gpt' });
    expect(agentEnv).toContainEqual({ name: 'HTTP_PROXY', value: 'http://127.0.0.1:15001' });
    expect(agentEnv).toContainEqual({ name: 'https_proxy', value: 'http://127.0.0.1:15001' });
    // Re-admission of the stored pod changes nothing.
    expect(await admitted(out)).toEqual({ uid: 'c5ed6c1a-1f3e-4a55-9f5b-1d0e0e0e0e01', allowed: true });

    // What the kubelet would run: the injected container's env ($(POD_IP) expanded), the token at its mount path.
    const tokenDir = join(dir, 'tokens');
    rmSync(tokenDir, { recursive: true, force: true });
    mkdirSync(tokenDir);
    writeFileSync(join(tokenDir, 'airlock-token'), saToken());
    const childEnv: Record<string, string> = {};
    for (const e of sidecar?.env ?? []) childEnv[e.name] = e.name === 'POD_IP' ? '127.0.0.1' : (e.value ?? '').replace('$(POD_IP)', '127.0.0.1');
    expect(childEnv.AIRLOCK_KUBERNETES_TOKEN_FILE).toBe('/var/run/secrets/airlock/tokens/airlock-token');
    childEnv.AIRLOCK_KUBERNETES_TOKEN_FILE = join(tokenDir, 'airlock-token');
    // The memory volume for the egress CA, as the kubelet would mount it.
    expect(childEnv.AIRLOCK_EGRESS_CA_FILE).toBe('/var/run/airlock/egress/ca.pem');
    childEnv.AIRLOCK_EGRESS_CA_FILE = join(tokenDir, 'ca.pem');
    childEnv.AIRLOCK_EGRESS_CA_BUNDLE_FILE = join(tokenDir, 'ca-bundle.pem');
    // The pod's own network namespace keeps 15001/15006/15020 apart; here they are free loopback ports.
    Object.assign(childEnv, { AIRLOCK_OUTBOUND_LISTEN: '127.0.0.1:0', AIRLOCK_INBOUND_LISTEN: '127.0.0.1:0', AIRLOCK_ADMIN_LISTEN: '127.0.0.1:0' });
    const args = sidecar?.args as string[];
    const p = spawnAirlock('injected-sidecar', args, { logFile: join(dir, 'sidecar.log'), env: childEnv });
    processes.push(p);
    const admin = Number((await p.logLine('sidecar listening; obtaining an SVID')).admin);
    await waitReady(p, `http://127.0.0.1:${admin}/readyz`);
    expect((await p.logLine('holding an X.509-SVID')).spiffeId).toBe(`spiffe://${TD}/ns/agents/sa/researcher`);
  });

  it('serves TLS 1.3 only, with a certificate for the Service name that chains to the Airlock CA', async () => {
    expect((await post(JSON.stringify(review(agentPod())))).protocol).toBe('TLSv1.3');
    const attempt = (o: Record<string, unknown>): Promise<string> =>
      new Promise((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port: injectionPort, ...o }, () => {
          s.destroy();
          resolve('connected');
        });
        s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      });
    expect(await attempt({ servername: SERVICE, ca: caPem, maxVersion: 'TLSv1.2' })).not.toBe('connected');
    expect(await attempt({ servername: 'kubernetes.default.svc', ca: caPem })).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(await attempt({ servername: SERVICE })).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  it.each([
    ['labelled airlock.dev/inject=disabled', agentPod({ labels: { 'airlock.dev/inject': 'disabled' } })],
    ['on the host network', { ...agentPod(), spec: { ...agentPod().spec, hostNetwork: true } }],
  ])('leaves a pod %s alone', async (_name, pod) => {
    expect(await admitted(pod)).toEqual({ uid: 'c5ed6c1a-1f3e-4a55-9f5b-1d0e0e0e0e01', allowed: true });
  });

  it('refuses a pod with a bad annotation, saying why, in the review', async () => {
    const response = await admitted(agentPod({ annotations: { 'airlock.dev/sidecar-memory-limit': '1GB' } }));
    expect(response).toMatchObject({ allowed: false, status: { code: 400, message: 'airlock sidecar injection: airlock.dev/sidecar-memory-limit: "1GB" is not a Kubernetes quantity (e.g. 100m, 0.5, 64Mi, 1Gi)' } });
    expect(response.patch).toBeUndefined();
  });

  it('refuses a review whose pod is malformed (allowed: false), and answers what is no review with an HTTP error in JSON', async () => {
    expect(await admitted({ metadata: {}, spec: { containers: 'agent' } })).toMatchObject({ allowed: false, status: { code: 400, message: expect.stringMatching(/malformed pod/) as unknown } });
    const cases: [string | Buffer, Parameters<typeof post>[1], number, RegExp][] = [
      ['{"apiVersion":', {}, 400, /the body must be JSON/],
      ['', {}, 400, /the body must be JSON/],
      [JSON.stringify({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: { uid: 'u' } }), {}, 400, /apiVersion is "admission.k8s.io\/v1beta1"/],
      [JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }), {}, 400, /request.uid is missing/],
      [JSON.stringify(review(agentPod())), { contentType: 'text/plain' }, 415, /application\/json/],
      [JSON.stringify(review(agentPod())), { path: '/mutate' }, 404, /POST \/inject/],
      [JSON.stringify(review(agentPod())), { path: '/inject/../inject' }, 404, /POST \/inject/],
      ['', { method: 'GET' }, 405, /POST only/],
      [Buffer.alloc(3 * 1024 * 1024, 0x20), {}, 413, /at most 2097152 bytes/],
    ];
    for (const [body, o, status, reason] of cases) {
      const res = await post(body, o);
      expect(res.status, `${status} for ${JSON.stringify(o)}`).toBe(status);
      expect((JSON.parse(res.body) as { reason: string }).reason).toMatch(reason);
    }
  });

  it('is served nowhere else: not over plain HTTP on its port, not on the metrics port', async () => {
    const body = JSON.stringify(review(agentPod()));
    const plain = await rawHttp(injectionPort, `POST /inject HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    expect(plain.status).toBe(0);
    const other = await fetch(`http://127.0.0.1:${httpPort}/inject`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(other.status).toBe(404);
  });

  it('counts every request by outcome', async () => {
    const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    const count = (outcome: string): number => Number(new RegExp(`^airlock_injection_requests_total\\{outcome="${outcome}"[^}]*\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 'NaN');
    expect(count('injected')).toBe(2);
    expect(count('already_injected')).toBe(1);
    expect(count('disabled')).toBe(1);
    expect(count('host_network')).toBe(1);
    expect(count('pod_refused')).toBe(1);
    expect(count('review_invalid')).toBe(3);
    expect(count('bad_request')).toBe(7);
    expect(count('internal_error')).toBe(0);
  });
});
