import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { ErrorCode } from '@airlock/common/errors';
import { createRootLogger } from '@airlock/common/logging';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { IdentityServiceClient, type SignCertificateRequest, type SignCertificateResponse } from '@airlock/proto/identity/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestCa } from '../../../sidecar/src/testing/certs.ts';
import { makeCsr } from '../ca/test-csr.ts';
import { controlPlaneConfig } from '../config/config.ts';
import { startControlPlane, type RunningControlPlane } from '../main.ts';
import { KubernetesTokenError } from './kubernetes-token.ts';
import { POD_NAME_EXTRA, POD_UID_EXTRA, TOKEN_REVIEW_PATH, TokenReviewClient } from './token-review.ts';
import { auditEventsOf } from '../testing/audit-events.ts';

const TD = 'airlock.test';
const CONTROL_PLANE_BEARER = 'control-plane-sa-token';

/** What the fake cluster knows about a token it issued. */
interface IssuedToken {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly audiences: readonly string[];
  /** Bound pod (projected token), or none (legacy secret token). */
  readonly pod?: { readonly name: string; readonly uid: string };
}

/**
 * A stand-in for kube-apiserver's TokenReview endpoint, answering the way the service-account
 * authenticator does: audiences intersected with spec.audiences, a bound token of a deleted pod
 * "invalidated", pod name/uid in user.extra.
 */
class FakeKubeApi {
  readonly tokens = new Map<string, IssuedToken>();
  readonly livePods = new Set<string>();
  readonly bearers: string[] = [];
  /** An API server that ignores spec.audiences (answers for its own audience). */
  audienceUnaware = false;
  server: Server;

  constructor(tls: { keyPem: string; certPem: string }) {
    this.server = createServer({ key: tls.keyPem, cert: tls.certPem }, (req, res) => {
      this.bearers.push(req.headers.authorization ?? '');
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (req.method !== 'POST' || req.url !== TOKEN_REVIEW_PATH) return void res.writeHead(404).end();
        if (req.headers.authorization !== `Bearer ${CONTROL_PLANE_BEARER}`) {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"kind":"Status","status":"Failure","reason":"Unauthorized","code":401}');
          return;
        }
        const review = JSON.parse(body) as { spec: { token: string; audiences?: string[] } };
        res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ ...review, status: this.#status(review.spec) }));
      });
    });
  }

  #status(spec: { token: string; audiences?: string[] }): Record<string, unknown> {
    const t = this.tokens.get(spec.token);
    if (t === undefined) return { user: {}, error: '[invalid bearer token, square/go-jose: error in cryptographic primitive]' };
    const wanted = this.audienceUnaware ? ['https://kubernetes.default.svc'] : (spec.audiences ?? ['https://kubernetes.default.svc']);
    const audiences = t.audiences.filter((a) => wanted.includes(a));
    if (audiences.length === 0) return { user: {}, error: `[invalid bearer token, token audiences ${JSON.stringify(t.audiences)} is invalid for the target audiences ${JSON.stringify(wanted)}]` };
    if (t.pod !== undefined && !this.livePods.has(t.pod.uid)) return { user: {}, error: '[invalid bearer token, service account token has been invalidated]' };
    return {
      authenticated: true,
      user: {
        username: `system:serviceaccount:${t.namespace}:${t.serviceAccount}`,
        uid: 'sa-uid',
        groups: ['system:serviceaccounts', `system:serviceaccounts:${t.namespace}`, 'system:authenticated'],
        extra: t.pod === undefined ? {} : { [POD_NAME_EXTRA]: [t.pod.name], [POD_UID_EXTRA]: [t.pod.uid], 'authentication.kubernetes.io/credential-id': ['JTI=1'] },
      },
      audiences,
    };
  }

  url(): string {
    return `https://127.0.0.1:${boundPort(this.server)}`;
  }
}

describe('Kubernetes attestation by TokenReview (fake API server on loopback over HTTPS)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-tokenreview-'));
  const clusterCa = createTestCa('Fake Kubernetes CA');
  const api = new FakeKubeApi(clusterCa.issue({ ips: ['127.0.0.1'], dnsNames: ['kubernetes.default.svc'] }));
  const impostorCa = createTestCa('Another CA');
  const impostor = new FakeKubeApi(impostorCa.issue({ ips: ['127.0.0.1'] }));
  const caFile = join(dir, 'ca.crt');
  const tokenFile = join(dir, 'token');
  let closedPort: number;
  let cp: RunningControlPlane;
  const logs: Record<string, unknown>[] = [];

  const client = (o: { apiServer?: string } = {}): TokenReviewClient =>
    new TokenReviewClient({ apiServer: o.apiServer ?? api.url(), caFile, tokenFile, trustDomain: TD });

  beforeAll(async () => {
    writeFileSync(caFile, clusterCa.certPem);
    writeFileSync(tokenFile, `${CONTROL_PLANE_BEARER}\n`);
    api.tokens.set('valid', { namespace: 'agents', serviceAccount: 'researcher', audiences: ['airlock'], pod: { name: 'researcher-0', uid: 'pod-1' } });
    api.livePods.add('pod-1');
    api.tokens.set('pod-gone', { namespace: 'agents', serviceAccount: 'researcher', audiences: ['airlock'], pod: { name: 'researcher-1', uid: 'pod-2' } });
    impostor.livePods.add('pod-1');
    await listen(api.server, { host: '127.0.0.1', port: 0 });
    await listen(impostor.server, { host: '127.0.0.1', port: 0 });
    const probe = createServer();
    await listen(probe, { host: '127.0.0.1', port: 0 });
    closedPort = boundPort(probe);
    await closeServer(probe);
    const logger = createRootLogger({ process: 'control-plane', level: 'error', destination: { write: (s: string) => logs.push(JSON.parse(s) as Record<string, unknown>) } });
    cp = await startControlPlane(
      controlPlaneConfig.load({
        flags: { trustDomain: TD, dataDir: join(dir, 'cp'), grpcListen: '127.0.0.1:0', httpListen: '127.0.0.1:0', adminListen: '127.0.0.1:0', kubernetesApiServer: api.url(), kubernetesApiCaFile: caFile, kubernetesApiTokenFile: tokenFile },
      }),
      { logger },
    );
  });
  afterAll(async () => {
    await cp.close();
    await closeServer(api.server);
    await closeServer(impostor.server);
    rmSync(dir, { recursive: true, force: true });
  });

  it('turns a token of a live pod into spiffe://<td>/ns/<ns>/sa/<sa>, presenting the control plane bearer', async () => {
    api.bearers.length = 0;
    expect(await client().review('valid')).toBe(`spiffe://${TD}/ns/agents/sa/researcher`);
    expect(api.bearers).toEqual([`Bearer ${CONTROL_PLANE_BEARER}`]);
  });

  // What a real API server answers (a pod gone, another audience, a forged or unbound token, a
  // bearer it does not know or whose RBAC is missing) is tested against one:
  // test/kubernetes-token-attests-a-sidecar.test.ts. This fake plays what a real one will not.

  it('refuses a review that does not confirm the audience airlock (audience-unaware API server)', async () => {
    api.audienceUnaware = true;
    api.tokens.set('api-audience', { namespace: 'agents', serviceAccount: 'researcher', audiences: ['https://kubernetes.default.svc'], pod: { name: 'researcher-0', uid: 'pod-1' } });
    try {
      await expect(client().review('api-audience')).rejects.toMatchObject({ reason: 'wrong_audience' });
    } finally {
      api.audienceUnaware = false;
    }
  });

  it('fails closed when the API server is unreachable, and says so', async () => {
    const err = await client({ apiServer: `https://127.0.0.1:${closedPort}` })
      .review('valid')
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubernetesTokenError);
    expect(err).toMatchObject({ reason: 'tokenreview_unavailable', code: ErrorCode.UpstreamUnavailable, message: expect.stringMatching(/gave no TokenReview answer.*ECONNREFUSED.*fail closed/) as unknown });
  });

  it('verifies the API server against its CA: a server with another CA is refused', async () => {
    impostor.bearers.length = 0;
    await expect(client({ apiServer: impostor.url() }).review('valid')).rejects.toMatchObject({ reason: 'tokenreview_unavailable', message: expect.stringMatching(/certificate/) as unknown });
    // The handshake failed before any request: the control plane's bearer never reached it.
    expect(impostor.bearers).toEqual([]);
  });

  describe('through SignCertificate on a running control plane', () => {
    function sign(req: Partial<SignCertificateRequest>): Promise<SignCertificateResponse> {
      const c = new IdentityServiceClient(`127.0.0.1:${cp.grpcPort}`, credentials.createSsl(Buffer.from(cp.trustBundlePem), null, null, { checkServerIdentity: () => undefined }), {
        'grpc.ssl_target_name_override': 'localhost',
      });
      return new Promise<SignCertificateResponse>((resolve, reject) => {
        c.signCertificate({ csrPem: makeCsr().csrPem, inboundAddress: '127.0.0.1:15006', ...req }, (err, res) => (err === null ? resolve(res) : reject(err)));
      }).finally(() => c.close());
    }

    it('issues the SVID of the reviewed service account', async () => {
      const res = await sign({ kubernetesSaToken: 'valid' });
      expect(res.spiffeId).toBe(`spiffe://${TD}/ns/agents/sa/researcher`);
      expect(new X509Certificate(res.certChainPem).subjectAltName).toContain(`URI:spiffe://${TD}/ns/agents/sa/researcher`);
    });

    it('refuses a token whose pod is gone with UNAUTHENTICATED and an audit line', async () => {
      const err = (await sign({ kubernetesSaToken: 'pod-gone' }).catch((e: unknown) => e)) as ServiceError;
      expect(err.code).toBe(status.UNAUTHENTICATED);
      expect(err.details).toMatch(/service account token has been invalidated/);
      expect(auditEventsOf(logs)).toContainEqual(expect.objectContaining({ kind: 'refusal', operation: 'SignCertificate', reasonCode: 'kubernetes_tokenreview_unauthenticated', attestation: 'kubernetes' }));
    });

    it('answers UNAVAILABLE (the sidecar retries) when the API server is down', async () => {
      await closeServer(api.server);
      const err = (await sign({ kubernetesSaToken: 'valid' }).catch((e: unknown) => e)) as ServiceError;
      expect(err.code).toBe(status.UNAVAILABLE);
      expect(err.details).toMatch(/fail closed/);
      expect(auditEventsOf(logs)).toContainEqual(expect.objectContaining({ kind: 'refusal', reasonCode: 'kubernetes_tokenreview_unavailable' }));
    });
  });
});
