// Issue 16 item 4: revoking an identity closes the connections it already holds open to other
// sidecars, not only its next handshakes. A real mesh; the test holds a real SVID of an identity (as
// a stolen one would be), keeps one mTLS connection to a sidecar's inbound port busy with requests
// (so no idle timeout could close it), revokes the identity, and sees the sidecar close it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminPost } from '../cli/src/admin-client.ts';
import { oneControlPlane } from '../sidecar/src/controlplane/control-plane-pool.ts';
import { JoinTokenSigner } from '../sidecar/src/identity/certificate-signer.ts';
import { newKeyAndCsr } from '../sidecar/src/identity/key-and-csr.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';

const POLICY = policyYaml('agents', ['gamma', 'scout'], [{ name: 'scout-to-gamma', from: 'scout', to: 'gamma', methods: ['GET'], paths: ['/v1/*'] }]);

describe('a revoked peer loses its open connections', () => {
  let mesh: Mesh;
  let scout: { certChainPem: string; keyPem: string; trustBundlePem: string };
  const scoutId = (m: Mesh): string => `spiffe://${m.trustDomain}/ns/agents/sa/scout`;

  beforeAll(async () => {
    mesh = await startMesh({ agents: ['gamma'], policy: POLICY });
    const signer = new JoinTokenSigner({
      ...oneControlPlane(`127.0.0.1:${mesh.grpcPort}`),
      caPem: readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8'),
      controlPlaneId: `spiffe://${mesh.trustDomain}/ns/airlock-system/sa/airlock-control-plane`,
      joinToken: await mesh.createJoinToken(scoutId(mesh)),
    });
    const { keyPem, csrPem } = await newKeyAndCsr();
    const signed = await signer.sign({ csrPem, inboundAddress: '127.0.0.1:1' });
    signer.close();
    scout = { certChainPem: signed.certChainPem, keyPem, trustBundlePem: signed.trustBundlePem };
  });
  afterAll(async () => mesh.close());

  it('closes the connection the identity holds, while it is busy, once the identity is revoked', { timeout: 60_000 }, async () => {
    const socket: TLSSocket = connect({ host: '127.0.0.1', port: mesh.agent('gamma').inboundPort, ca: scout.trustBundlePem, cert: scout.certChainPem, key: scout.keyPem, checkServerIdentity: () => undefined });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    socket.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const connection = { open: true };
    void closed.then(() => (connection.open = false));
    const send = (): boolean => socket.write('GET /v1/busy HTTP/1.1\r\nHost: gamma.agents\r\n\r\n');
    const statuses = (): string[] => [...received.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1] ?? '');

    // Busy before: every request answered 200 on the one connection.
    for (let i = 0; i < 5; i++) {
      send();
      await expect.poll(statuses).toHaveLength(i + 1);
    }
    expect(statuses()).toEqual(['200', '200', '200', '200', '200']);

    await adminPost(mesh.creds, '/v1/agents/revoke', { identity: scoutId(mesh) });
    // Keep it busy (a request every 100 ms: no idle timeout applies) until the sidecar closes it.
    const deadline = Date.now() + 20_000;
    while (connection.open && Date.now() < deadline) {
      send();
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(connection.open).toBe(false);
    await closed;
    // Nothing reached the app after the revocation but what was decided before it.
    const metrics = await (await fetch(`http://127.0.0.1:${mesh.agent('gamma').adminPort}/metrics`)).text();
    expect(metrics).toMatch(/airlock_sidecar_inbound_rejected_total\{[^}]*reason="revoked"[^}]*\} [1-9]/);
  });
});
