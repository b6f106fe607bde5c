import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caFromPem, createTestCa, type KeyAndCert } from '../sidecar/src/testing/certs.ts';
import type { Mesh } from './support/mesh.ts';
import { startStandardMesh } from './support/standard-mesh.ts';

/**
 * Attacks on a sidecar's inbound mTLS port, each with a client that speaks TLS directly (no
 * sidecar): the request must never reach the app behind it.
 */
describe('the inbound mTLS listener', () => {
  let mesh: Mesh;
  let meshCa: ReturnType<typeof caFromPem>;
  beforeAll(async () => {
    mesh = await startStandardMesh();
    meshCa = caFromPem(readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8'), readFileSync(join(mesh.dataDir, 'ca.key'), 'utf8'));
  });
  afterAll(async () => mesh.close());

  /** Sends GET /v1/search over TLS with the given client cert; resolves with the status line or the failure. */
  function attempt(client: KeyAndCert | undefined): Promise<string> {
    const researcher = mesh.agent('researcher');
    return new Promise((resolve) => {
      const socket = connect({
        host: '127.0.0.1',
        port: researcher.inboundPort,
        ca: readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8'),
        checkServerIdentity: () => undefined,
        ...(client === undefined ? {} : { cert: client.certPem, key: client.keyPem }),
      });
      let answer = '';
      socket.on('secureConnect', () => socket.write('GET /v1/search HTTP/1.1\r\nHost: researcher.agents\r\nConnection: close\r\n\r\n'));
      socket.on('data', (d: Buffer) => (answer += d.toString('utf8')));
      socket.on('error', (err: Error) => resolve(`refused: ${err.message}`));
      socket.on('close', () => resolve(answer === '' ? 'refused: closed' : (answer.split('\r\n')[0] ?? '')));
      socket.setTimeout(5000, () => socket.destroy(new Error('timeout')));
    });
  }

  it('serves a client holding a valid SVID of an allowed peer (the control case)', async () => {
    const planner = meshCa.issue({ uris: [mesh.agent('planner').identity] });
    expect(await attempt(planner)).toBe('HTTP/1.1 200 OK');
  });

  it.each<[string, () => KeyAndCert | undefined]>([
    ['no client certificate', () => undefined],
    ['a certificate from another CA naming an allowed peer', () => createTestCa('Foreign CA').issue({ uris: [mesh.agent('planner').identity] })],
    ['an expired certificate from the mesh CA', () => meshCa.issue({ uris: [mesh.agent('planner').identity], ttlMs: -60_000 })],
    ['a certificate with two URI SANs', () => meshCa.issue({ uris: [mesh.agent('planner').identity, mesh.agent('payments').identity] })],
    ['a certificate with no URI SAN', () => meshCa.issue({ dnsNames: ['planner.agents'] })],
    // What `airlock admin-cert create` gets from the same CA: spiffe://<td>/admin/<name>, no workload.
    ['an admin certificate of the mesh CA', () => meshCa.issue({ uris: [mesh.agent('planner').identity.replace(/\/ns\/.*$/, '/admin/ops')] })],
  ])('refuses %s, and nothing reaches the app', async (_name, makeClient) => {
    const before = mesh.agent('researcher').received.length;
    const outcome = await attempt(makeClient());
    expect(outcome).toMatch(/^refused/);
    expect(mesh.agent('researcher').received.length).toBe(before);
  });
});
