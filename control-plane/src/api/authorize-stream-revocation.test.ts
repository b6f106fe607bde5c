import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { createRootLogger } from '@airlock/common/logging';
import { AuthorizationServiceClient, AuthorizeRequest, Direction, Verdict, type AuthorizeResult, type AuthorizeStreamResponse } from '@airlock/proto/authorization/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../ca/ca.ts';
import { makeCsr } from '../ca/test-csr.ts';
import { controlPlaneConfig } from '../config/config.ts';
import { controlPlaneSpiffeId, startControlPlane, type RunningControlPlane } from '../main.ts';

const TD = 'airlock.test';
const RESEARCHER = `spiffe://${TD}/ns/demo/sa/researcher`;
const POLICY = `
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

describe('AuthorizeStream of an identity revoked while the stream is open', () => {
  let dir: string;
  let cp: RunningControlPlane;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-stream-revoke-'));
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    const config = controlPlaneConfig.load({
      flags: { trustDomain: TD, dataDir: join(dir, 'data'), grpcListen: '127.0.0.1:0', httpListen: '127.0.0.1:0', policyFile: join(dir, 'policy.yaml') },
    });
    cp = await startControlPlane(config, { logger: createRootLogger({ process: 'control-plane', level: 'error', destination: { write: () => undefined } }) });
  });
  afterAll(async () => {
    await cp.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // The stream verifies its caller once, when it opens; revocation must still reach it. Each check
  // is denied ("identity revoked", a 403 to the agent) rather than the stream cut, which would turn
  // the checks in flight into 503s.
  it('denies every later check of the open stream, whatever the policy says', async () => {
    const ca = CertificateAuthority.loadOrCreate(join(dir, 'data'), TD);
    const { csrPem, keyPem } = makeCsr();
    const certPem = ca.issueSvid(csrPem, RESEARCHER, 600_000).certPem;
    const client = new AuthorizationServiceClient(
      `127.0.0.1:${cp.grpcPort}`,
      credentials.createSsl(Buffer.from(cp.trustBundlePem), Buffer.from(keyPem), Buffer.from(certPem), {
        checkServerIdentity: (_h, cert) => (cert.subjectaltname?.split(', ').includes(`URI:${controlPlaneSpiffeId(TD)}`) === true ? undefined : new Error('not the control plane')),
      }),
      { 'grpc.ssl_target_name_override': 'localhost' },
    );
    const check = { id: 1, request: AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: RESEARCHER, destinationHost: 'api.example.com', destinationPort: 443, method: 'CONNECT' }) };
    const open = (): { send(): Promise<AuthorizeResult[]>; ended: Promise<ServiceError | undefined>; cancel(): void } => {
      const stream = client.authorizeStream();
      const waiting: ((r: AuthorizeResult[]) => void)[] = [];
      stream.on('data', (m: AuthorizeStreamResponse) => waiting.shift()?.(m.results));
      const ended = new Promise<ServiceError | undefined>((resolve) => {
        stream.on('error', (e: ServiceError) => resolve(e));
        stream.on('end', () => resolve(undefined));
      });
      return { send: () => new Promise((resolve) => { waiting.push(resolve); stream.write({ checks: [check] }); }), ended, cancel: () => stream.cancel() };
    };
    try {
      const s = open();
      expect((await s.send())[0]?.decision?.verdict).toBe(Verdict.VERDICT_ALLOW);

      const res = await fetch(`http://127.0.0.1:${cp.httpPort}/v1/agents/revoke`, {
        method: 'POST',
        headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ identity: RESEARCHER }),
      });
      expect(res.status).toBe(200);

      for (const results of [await s.send(), await s.send()]) {
        expect(results[0]?.decision).toMatchObject({ verdict: Verdict.VERDICT_DENY, reason: 'identity revoked' });
      }
      s.cancel();
    } finally {
      client.close();
    }
  });
});
