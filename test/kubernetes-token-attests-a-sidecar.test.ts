import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { spawnAirlock, waitReady, type AirlockProcess } from '../cli/src/demo/processes.ts';

const TD = 'k8s.test';
const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

/** A projected service-account token as the API server would sign it. */
function saToken(o: { aud?: string[] } = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const enc = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const claims = {
    iss: ISSUER,
    aud: o.aud ?? ['airlock'],
    sub: 'system:serviceaccount:agents:researcher',
    iat: now,
    nbf: now,
    exp: now + 600,
    'kubernetes.io': { namespace: 'agents', serviceaccount: { name: 'researcher', uid: 'u1' }, pod: { name: 'researcher-0', uid: 'p1' } },
  };
  const input = `${enc({ alg: 'RS256', kid: 'k1', typ: 'JWT' })}.${enc(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
}

describe('a sidecar attested by its Kubernetes service-account token', () => {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-k8s-'));
  const dataDir = join(dir, 'control-plane');
  const processes: AirlockProcess[] = [];
  let jwks: Server;
  let grpcPort = 0;

  beforeAll(async () => {
    jwks = createServer((_req, res) => res.end(JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', use: 'sig', alg: 'RS256' }] })));
    await listen(jwks, { host: '127.0.0.1', port: 0 });
    const cp = spawnAirlock('control-plane', [
      'control-plane', '--trust-domain', TD, '--data-dir', dataDir,
      '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0',
      '--kubernetes-jwks', `http://127.0.0.1:${boundPort(jwks)}/openid/v1/jwks`, '--kubernetes-issuer', ISSUER,
    ], { logFile: join(dir, 'control-plane.log') });
    processes.push(cp);
    grpcPort = Number((await cp.logLine('control plane ready')).grpcPort);
  });
  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await closeServer(jwks);
    rmSync(dir, { recursive: true, force: true });
  });

  function sidecar(name: string, token: string): AirlockProcess {
    const tokenFile = join(dir, `${name}.token`);
    writeFileSync(tokenFile, token);
    const p = spawnAirlock(name, [
      'sidecar', '--trust-domain', TD, '--control-plane', `127.0.0.1:${grpcPort}`, '--ca-file', join(dataDir, 'ca.pem'),
      '--outbound-listen', '127.0.0.1:0', '--inbound-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--app-port', '9',
      '--kubernetes-token-file', tokenFile,
    ], { logFile: join(dir, `${name}.log`) });
    processes.push(p);
    return p;
  }

  it('gets the SVID spiffe://<td>/ns/<ns>/sa/<sa> of its token', async () => {
    const p = sidecar('good', saToken());
    const admin = Number((await p.logLine('sidecar listening; obtaining an SVID')).admin);
    await waitReady(p, `http://127.0.0.1:${admin}/readyz`);
    expect((await p.logLine('holding an X.509-SVID')).spiffeId).toBe(`spiffe://${TD}/ns/agents/sa/researcher`);
  });

  it('is refused with a token for another audience, with an audit line', async () => {
    const p = sidecar('wrong-audience', saToken({ aud: ['https://kubernetes.default.svc'] }));
    const failed = await p.logLine('cannot obtain an SVID');
    expect(JSON.stringify(failed)).toMatch(/audience is not \\"airlock\\"/);
    const admin = Number((await p.logLine('sidecar listening; obtaining an SVID')).admin);
    expect((await fetch(`http://127.0.0.1:${admin}/readyz`)).status).toBe(503);
    const cp = processes[0];
    const refused = await cp?.logLine('certificate request refused');
    expect(refused).toMatchObject({ audit: true, reason: 'kubernetes_wrong_audience', attestation: 'kubernetes' });
  });
});
