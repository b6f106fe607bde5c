// For tests only: a real control plane on loopback (port 0) in a temp dir, and gRPC clients that
// recognize it by SPIFFE ID as sidecars do.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type ChannelCredentials, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { createRootLogger } from '@airlock/common/logging';
import { AuthorizationServiceClient, type AuthorizeCheck, type AuthorizeResult, type AuthorizeStreamRequest, type AuthorizeStreamResponse } from '@airlock/proto/authorization/v1';
import { CertificateAuthority } from '../ca/ca.ts';
import { makeCsr } from '../ca/test-csr.ts';
import { controlPlaneConfig } from '../config/config.ts';
import { controlPlaneSpiffeId, startControlPlane, type RunningControlPlane, type StartOptions } from '../main.ts';

export const TD = 'airlock.test';
/** The agent most fixtures ask about, and a policy letting its segment reach api.example.com:443. */
export const RESEARCHER = `spiffe://${TD}/ns/demo/sa/researcher`;
export const RESEARCHERS_TO_EXAMPLE = `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: researchers }
spec: { selector: { namespace: demo, serviceAccounts: [researcher] } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: researchers-to-example }
spec:
  from: { segments: [researchers] }
  to: { hosts: [api.example.com], ports: [443] }
  action: allow
`;

// An IP is not a valid TLS server name (SNI); the name does not matter, the SPIFFE ID is checked.
export const CLIENT_OPTIONS = { 'grpc.ssl_target_name_override': 'localhost' };

export interface Identity {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface TestControlPlane {
  readonly cp: RunningControlPlane;
  readonly dataDir: string;
  /** Every line logged, parsed (audit lines included: they ignore the level). */
  readonly logs: Record<string, unknown>[];
  /** An SVID from the control plane's own CA, without going through enrollment. */
  svid(spiffeId: string, ttlMs?: number): Identity;
  close(): Promise<void>;
}

/** Starts a control plane with `policyYaml` (and settings `flags`), logging at level error into `logs`. */
export async function startTestControlPlane(policyYaml: string, prefix = 'airlock-cp-', opts: Omit<StartOptions, 'logger'> = {}, flags: Record<string, string> = {}): Promise<TestControlPlane> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  writeFileSync(join(dir, 'policy.yaml'), policyYaml);
  // A data dir of the caller's (flags.dataDir) outlives this control plane: the next one starts from its state.
  const dataDir = flags.dataDir ?? join(dir, 'data');
  const config = controlPlaneConfig.load({
    flags: { trustDomain: TD, dataDir, grpcListen: '127.0.0.1:0', httpListen: '127.0.0.1:0', adminListen: '127.0.0.1:0', policyFile: join(dir, 'policy.yaml'), ...flags },
  });
  const logs: Record<string, unknown>[] = [];
  const logger = createRootLogger({ process: 'control-plane', level: 'error', destination: { write: (s: string) => logs.push(JSON.parse(s) as Record<string, unknown>) } });
  const cp = await startControlPlane(config, { ...opts, logger });
  let ca: CertificateAuthority | undefined;
  return {
    cp,
    dataDir,
    logs,
    svid(spiffeId, ttlMs = 600_000) {
      ca ??= CertificateAuthority.loadOrCreate(dataDir, TD);
      const { csrPem, keyPem } = makeCsr();
      return { certPem: ca.issueSvid(csrPem, spiffeId, ttlMs).certPem, keyPem };
    },
    async close() {
      await cp.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A request to the admin API as a client that trusts only `caPem` (default: the control plane's trust
 * bundle) would make it, over HTTPS; the answer as a fetch Response. `init.body` is a string.
 */
export function adminFetch(cp: Pick<RunningControlPlane, 'adminUrl' | 'trustBundlePem'>, path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}, caPem = cp.trustBundlePem): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, cp.adminUrl), { method: init.method ?? 'GET', headers: init.headers, ca: caPem }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
        const status = res.statusCode ?? 0;
        resolve(new Response(status === 204 || status === 304 ? null : Buffer.concat(chunks), { status, headers }));
      });
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

/** TLS to the control plane (mTLS with `id`), which must present the control plane's SPIFFE ID. */
export function controlPlaneChannel(caPem: string, id?: Identity): ChannelCredentials {
  return credentials.createSsl(Buffer.from(caPem), id === undefined ? null : Buffer.from(id.keyPem), id === undefined ? null : Buffer.from(id.certPem), {
    checkServerIdentity: (_host, cert) => (cert.subjectaltname?.split(', ').includes(`URI:${controlPlaneSpiffeId(TD)}`) === true ? undefined : new Error('not the control plane')),
  });
}

export interface TestAuthorizeStream {
  readonly stream: ClientDuplexStream<AuthorizeStreamRequest, AuthorizeStreamResponse>;
  /** Sends one message; resolves with the results of the next message received. */
  send(checks: AuthorizeCheck[]): Promise<AuthorizeResult[]>;
  /** Resolves when the stream ends: with its error, or undefined for a clean end. */
  readonly ended: Promise<ServiceError | undefined>;
  close(): void;
}

/** One AuthorizeStream over mTLS with `id` (plain TLS without). */
export function openAuthorizeStream(cp: RunningControlPlane, id: Identity | undefined): TestAuthorizeStream {
  const client = new AuthorizationServiceClient(`127.0.0.1:${cp.grpcPort}`, controlPlaneChannel(cp.trustBundlePem, id), CLIENT_OPTIONS);
  const stream = client.authorizeStream();
  const waiting: ((r: AuthorizeResult[]) => void)[] = [];
  stream.on('data', (m: AuthorizeStreamResponse) => waiting.shift()?.(m.results));
  const ended = new Promise<ServiceError | undefined>((resolve) => {
    stream.on('error', (e: ServiceError) => resolve(e));
    stream.on('end', () => resolve(undefined));
  });
  return {
    stream,
    send: (checks) =>
      new Promise((resolve) => {
        waiting.push(resolve);
        stream.write({ checks });
      }),
    ended,
    close: () => {
      stream.cancel();
      client.close();
    },
  };
}
