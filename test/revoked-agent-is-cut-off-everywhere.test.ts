import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '@airlock/common/errors';
import { JoinTokenSigner, MtlsRenewalSigner } from '../sidecar/src/identity/certificate-signer.ts';
import { oneControlPlane } from '../sidecar/src/controlplane/control-plane-pool.ts';
import { newKeyAndCsr } from '../sidecar/src/identity/key-and-csr.ts';
import type { Svid } from '../sidecar/src/identity/svid.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { adminFetch } from '../control-plane/src/testing/test-control-plane.ts';

const BIN = join(import.meta.dirname, '..', 'cli', 'bin', 'airlock.js');
const AGENTS = ['alpha', 'beta', 'gamma'] as const;
const POLICY = policyYaml('agents', AGENTS, [
  { name: 'alpha-to-beta', from: 'alpha', to: 'beta', methods: ['GET'], paths: ['/v1/*'] },
  { name: 'beta-to-alpha', from: 'beta', to: 'alpha', methods: ['GET'], paths: ['/v1/*'] },
  { name: 'beta-to-gamma', from: 'beta', to: 'gamma', methods: ['GET'], paths: ['/v1/*'] },
]);
const cpId = (td: string): string => `spiffe://${td}/ns/airlock-system/sa/airlock-control-plane`;

function airlock(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

/** One HTTPS request straight to a sidecar's inbound port, presenting `svid`: the status, or how the connection ended. */
function directCall(port: number, host: string, svid: Svid): Promise<string> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/v1/direct', headers: { host }, ca: svid.trustBundlePem, cert: svid.certChainPem, key: svid.keyPem, agent: false, timeout: 5000, checkServerIdentity: () => undefined },
      (res) => {
        res.resume();
        res.on('end', () => resolve(`status ${res.statusCode ?? 0}`));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
    req.end();
  });
}

function credsEnv(mesh: Mesh): NodeJS.ProcessEnv {
  const file = join(mesh.dir, 'admin-credentials.json');
  writeFileSync(file, JSON.stringify(mesh.creds), { mode: 0o600 });
  return { AIRLOCK_CREDENTIALS: file };
}

describe('airlock agent revoke', () => {
  let mesh: Mesh;
  let beta: string;
  let stolen: Svid;
  beforeAll(async () => {
    mesh = await startMesh({ agents: AGENTS, policy: POLICY });
    beta = mesh.agent('beta').identity;
    // A second, independent SVID for beta's identity held by the test: what an attacker who took
    // beta's key and certificate would hold. Its handshakes must be refused after revocation.
    const signer = new JoinTokenSigner({ ...oneControlPlane(`127.0.0.1:${mesh.grpcPort}`), caPem: readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8'), controlPlaneId: cpId(mesh.trustDomain), joinToken: await mesh.createJoinToken(beta) });
    const { keyPem, csrPem } = await newKeyAndCsr();
    const signed = await signer.sign({ csrPem, inboundAddress: `127.0.0.1:${mesh.agent('beta').inboundPort}` });
    signer.close();
    stolen = { spiffeId: signed.spiffeId, certChainPem: signed.certChainPem, keyPem, trustBundlePem: signed.trustBundlePem, expiresAt: new Date(signed.expiresAtMs) };
  });
  afterAll(async () => mesh.close());

  it('cuts the agent off: calls both ways, handshakes and renewal', { timeout: 60_000 }, async () => {
    // Before: everything works, including a direct handshake with the stolen certificate.
    expect((await mesh.call('alpha', 'GET', 'http://beta.agents/v1/a')).status).toBe(200);
    expect((await mesh.call('beta', 'GET', 'http://alpha.agents/v1/a')).status).toBe(200);
    expect(await directCall(mesh.agent('gamma').inboundPort, 'gamma.agents', stolen)).toBe('status 200');

    const r = await airlock(['agent', 'revoke', beta, '-o', 'json'], credsEnv(mesh));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { identity: string; alreadyRevoked: boolean; revokedSerials: string[] };
    expect(out).toMatchObject({ identity: beta, alreadyRevoked: false });
    expect(out.revokedSerials.length).toBeGreaterThanOrEqual(2);

    // The very next calls, to it and from it, are denied with the reason.
    const to = await mesh.call('alpha', 'GET', 'http://beta.agents/v1/b');
    expect(to.status).toBe(403);
    expect(to.json<{ reason: string }>().reason).toBe('identity revoked');
    const from = await mesh.call('beta', 'GET', 'http://alpha.agents/v1/b');
    expect(from.status).toBe(403);
    expect(from.json<{ reason: string }>().reason).toBe('identity revoked');

    // Another sidecar refuses a handshake with the still-unexpired certificate within seconds.
    expect(stolen.expiresAt.getTime()).toBeGreaterThan(Date.now());
    let outcome = '';
    for (let i = 0; i < 50; i++) {
      outcome = await directCall(mesh.agent('gamma').inboundPort, 'gamma.agents', stolen);
      if (outcome.startsWith('error')) break;
      await sleep(100);
    }
    expect(outcome).toMatch(/^error (ECONNRESET|EPIPE|socket hang up)/);
    const gammaMetrics = await (await fetch(`http://127.0.0.1:${mesh.agent('gamma').adminPort}/metrics`)).text();
    expect(gammaMetrics).toMatch(/airlock_sidecar_inbound_rejected_total\{[^}]*reason="revoked"[^}]*\} [1-9]/);
    // gamma's app never saw a request after the revocation.
    expect(mesh.agent('gamma').received.filter((b) => b.path === '/v1/direct')).toHaveLength(1);

    // Its renewal is refused.
    const renewer = new MtlsRenewalSigner({ ...oneControlPlane(`127.0.0.1:${mesh.grpcPort}`), controlPlaneId: cpId(mesh.trustDomain) });
    const { csrPem } = await newKeyAndCsr();
    await expect(renewer.sign({ csrPem, inboundAddress: '', current: stolen })).rejects.toMatchObject({ code: ErrorCode.Attestation, message: expect.stringContaining('revoked') as unknown });
    renewer.close();

    // Revoking again is harmless and says so.
    const again = await airlock(['agent', 'revoke', beta, '-o', 'json'], credsEnv(mesh));
    expect(JSON.parse(again.stdout)).toMatchObject({ identity: beta, alreadyRevoked: true });
  });

  it('refuses the revoke call without the admin token', async () => {
    const tls = { adminUrl: mesh.creds.server, trustBundlePem: readFileSync(mesh.creds.caFile ?? '', 'utf8') };
    const res = await adminFetch(tls, '/v1/agents/revoke', { method: 'POST', body: JSON.stringify({ identity: mesh.agent('alpha').identity }) });
    expect(res.status).toBe(401);
    expect((await mesh.call('alpha', 'GET', 'http://beta.agents/v1/c')).json<{ reason: string }>().reason).toBe('identity revoked');
    expect((await mesh.call('beta', 'GET', 'http://gamma.agents/v1/c')).status).toBe(403);
  });
});
