import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminGet, adminPost } from '../cli/src/admin-client.ts';
import { caFromPem } from '../sidecar/src/testing/certs.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';

const AGENTS = ['alpha', 'beta'] as const;
const POLICY = policyYaml('agents', AGENTS, [
  { name: 'alpha-to-beta', from: 'alpha', to: 'beta', methods: ['GET'], paths: ['/v1/*'] },
  { name: 'beta-to-alpha', from: 'beta', to: 'alpha', methods: ['GET'], paths: ['/v1/*'] },
]);
const PACE_MS = 10;
const MAX_CALLS = 8_000;
const STEP_TIMEOUT_MS = 30_000;

async function metricValue(url: string, name: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** Whether a TLS handshake presenting `cert` to a sidecar's inbound port is accepted. */
function handshakeAccepted(port: number, cert: { certPem: string; keyPem: string }, caPem: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, cert: cert.certPem, key: cert.keyPem, ca: caPem, checkServerIdentity: () => undefined });
    // TLS 1.3: the server judges the client certificate after the client's handshake completes,
    // so a refusal shows up as the connection closing (or an alert) right after it.
    socket.once('secureConnect', () => {
      socket.write('GET /v1/x HTTP/1.1\r\nhost: beta.agents\r\n\r\n');
    });
    socket.once('data', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('close', () => resolve(false));
  });
}

interface CaStatus {
  roots: { id: string; state: string }[];
}

describe('rolling the trust domain to a new root under continuous traffic both ways', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    // 20 s SVIDs: no sidecar renews (at ~10 s) between prepare and activate, so the new root can only
    // reach them through the pushed bundle; activate --renew-now then moves them to the new root.
    mesh = await startMesh({ agents: AGENTS, policy: POLICY, controlPlaneArgs: ['--svid-ttl', '20s'], authzTimeout: '2s' });
  });
  afterAll(async () => mesh.close());

  it('prepare → activate → retire fails no call, and the old root is then refused', { timeout: 150_000 }, async () => {
    const metrics = (name: string): string => `http://127.0.0.1:${mesh.agent(name).adminPort}/metrics`;
    const bundleSize = (name: string): Promise<number> => metricValue(metrics(name), 'airlock_sidecar_trust_bundle_certificates');
    const oldRoot = { certPem: readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8'), keyPem: readFileSync(join(mesh.dataDir, 'ca.key'), 'utf8') };
    const failures: string[] = [];
    let calls = 0;
    let stop = false;
    const loop = async (from: string, to: string): Promise<void> => {
      for (let i = 0; i < MAX_CALLS && !stop; i++) {
        calls++;
        try {
          const res = await mesh.call(from, 'GET', `http://${to}.agents/v1/ping/${i}`);
          if (res.status !== 200) failures.push(`${from}→${to} #${i}: ${res.status} ${res.text.slice(0, 200)}`);
        } catch (err) {
          failures.push(`${from}→${to} #${i}: ${err instanceof Error ? err.message : String(err)}`);
        }
        await sleep(PACE_MS);
      }
    };
    const traffic = Promise.all([loop('alpha', 'beta'), loop('beta', 'alpha')]);
    try {
      await sleep(500);
      for (const a of AGENTS) expect(await bundleSize(a)).toBe(1);

      const prepared = (await adminPost(mesh.creds, '/v1/ca/prepare', {})) as { roots: { id: string; state: string }[] };
      const newRoot = prepared.roots[0]?.id ?? '';
      expect(prepared.roots[0]?.state).toBe('prepared');
      // The new root reaches every sidecar before it issues anything.
      await until('the two-root bundle at every sidecar', async () => (await Promise.all(AGENTS.map(bundleSize))).every((n) => n === 2));

      await adminPost(mesh.creds, '/v1/ca/activate', { renewNow: true });
      // Still holding SVIDs of the old root: retire is refused, not forced.
      await expect(adminPost(mesh.creds, '/v1/ca/retire', {})).rejects.toThrow(/unexpired SVID/);
      await until('no unexpired SVID of the old root', async () => {
        try {
          await adminPost(mesh.creds, '/v1/ca/retire', {});
          return true;
        } catch (err) {
          if (err instanceof Error && /unexpired SVID/.test(err.message)) return false;
          throw err;
        }
      });
      await until('the one-root bundle at every sidecar', async () => (await Promise.all(AGENTS.map(bundleSize))).every((n) => n === 1));
      // Traffic goes on with the new root alone.
      await sleep(3000);

      const status = (await adminGet(mesh.creds, '/v1/ca')) as CaStatus;
      expect(status.roots.find((r) => r.id === newRoot)?.state).toBe('active');
      expect(status.roots.filter((r) => r.state === 'retired')).toHaveLength(1);
      // New sidecars bootstrap from the bundle file, which now holds the new root alone.
      expect(readFileSync(join(mesh.dataDir, 'trust-bundle.pem'), 'utf8')).not.toContain(oldRoot.certPem.trim().split('\n')[1]);
    } finally {
      stop = true;
      await traffic;
    }
    expect(failures).toEqual([]);
    expect(calls).toBeGreaterThan(200);

    // The retired root is no longer trusted: a certificate it signs for a real identity is refused,
    // while one from the new root is accepted (the probe can tell the two apart).
    const bundle = readFileSync(join(mesh.dataDir, 'trust-bundle.pem'), 'utf8');
    const status = (await adminGet(mesh.creds, '/v1/ca')) as CaStatus;
    const active = status.roots.find((r) => r.state === 'active')?.id ?? '';
    const fresh = caFromPem(bundle, readFileSync(join(mesh.dataDir, `ca-${active}.key`), 'utf8')).issue({ uris: [mesh.agent('alpha').identity] });
    expect(await handshakeAccepted(mesh.agent('beta').inboundPort, fresh, bundle)).toBe(true);
    const forged = caFromPem(oldRoot.certPem, oldRoot.keyPem).issue({ uris: [mesh.agent('alpha').identity] });
    expect(await handshakeAccepted(mesh.agent('beta').inboundPort, forged, bundle)).toBe(false);
  });
});
