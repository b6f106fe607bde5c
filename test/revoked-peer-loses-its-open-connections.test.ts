// Issue 16 item 4 and issue 15: revoking or quarantining an identity closes the connections it
// already holds open to other sidecars, not only its next handshakes or calls. A real mesh; the test
// holds real SVIDs of identities (as stolen ones would be), keeps one mTLS connection to a sidecar's
// inbound port busy with requests (so no idle timeout could close it), contains the identity, and
// sees the sidecar close it.
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminPost } from '../cli/src/admin-client.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { obtainSvid } from './support/svid.ts';

const POLICY = policyYaml('agents', ['gamma', 'scout', 'ranger', 'drone'], [
  { name: 'scout-to-gamma', from: 'scout', to: 'gamma', methods: ['GET'], paths: ['/v1/*'] },
  { name: 'ranger-to-gamma', from: 'ranger', to: 'gamma', methods: ['GET'], paths: ['/v1/*'] },
  { name: 'drone-to-gamma', from: 'drone', to: 'gamma', methods: ['GET'], paths: ['/v1/*'] },
]);

interface Held {
  readonly socket: TLSSocket;
  readonly statuses: () => string[];
  readonly open: () => boolean;
  readonly closed: Promise<void>;
  send(): void;
}

describe('a contained peer loses its open connections', () => {
  let mesh: Mesh;
  const idOf = (name: string): string => `spiffe://${mesh.trustDomain}/ns/agents/sa/${name}`;

  beforeAll(async () => {
    mesh = await startMesh({ agents: ['gamma'], policy: POLICY });
  });
  afterAll(async () => mesh.close());

  /** A real SVID of `name` (no sidecar of its own) and one mTLS connection to gamma's inbound port, busy for 5 requests. */
  async function hold(name: string): Promise<Held> {
    const svid = await obtainSvid(mesh, idOf(name));
    const socket = connect({ host: '127.0.0.1', port: mesh.agent('gamma').inboundPort, ca: svid.ca, cert: svid.certChainPem, key: svid.keyPem, checkServerIdentity: () => undefined });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    let received = '';
    let isOpen = true;
    socket.on('data', (d: Buffer) => (received += d.toString('latin1')));
    socket.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    void closed.then(() => (isOpen = false));
    const held: Held = {
      socket,
      statuses: () => [...received.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1] ?? ''),
      open: () => isOpen,
      closed,
      send: () => void socket.write('GET /v1/busy HTTP/1.1\r\nHost: gamma.agents\r\n\r\n'),
    };
    for (let i = 0; i < 5; i++) {
      held.send();
      await expect.poll(held.statuses).toHaveLength(i + 1);
    }
    expect(held.statuses()).toEqual(['200', '200', '200', '200', '200']);
    return held;
  }

  /** Keeps `held` busy (a request every 100 ms: no idle timeout applies) until the sidecar closes it, or 20 s. */
  async function busyUntilClosed(held: Held): Promise<boolean> {
    const deadline = Date.now() + 20_000;
    while (held.open() && Date.now() < deadline) {
      held.send();
      await new Promise((r) => setTimeout(r, 100));
    }
    return !held.open();
  }

  const rejected = async (reason: string): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${mesh.agent('gamma').adminPort}/metrics`)).text();
    return Number(new RegExp(`^airlock_sidecar_inbound_rejected_total\\{[^}]*reason="${reason}"[^}]*\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  };

  it('closes the connection the identity holds, while it is busy, once the identity is revoked', { timeout: 60_000 }, async () => {
    const held = await hold('scout');
    await adminPost(mesh.creds, '/v1/agents/revoke', { identity: idOf('scout') });
    expect(await busyUntilClosed(held)).toBe(true);
    expect(await rejected('revoked')).toBeGreaterThanOrEqual(1);
  });

  it('closes the connection of a quarantined identity (its certificate still valid), while it is busy', { timeout: 60_000 }, async () => {
    const held = await hold('ranger');
    await adminPost(mesh.creds, '/v1/agents/quarantine', { identity: idOf('ranger'), reason: 'exfiltration suspected' });
    expect(await busyUntilClosed(held)).toBe(true);
    expect(await rejected('quarantined')).toBeGreaterThanOrEqual(1);
    // Nothing after the quarantine was allowed on it.
    const after = held.statuses().slice(5);
    expect(after.filter((s) => s === '200').length).toBeLessThanOrEqual(1);
  });

  it('closes the connection of every identity a quarantined segment matches (the control plane resolves the segment for the sidecar)', { timeout: 60_000 }, async () => {
    const held = await hold('drone');
    const before = await rejected('quarantined');
    await adminPost(mesh.creds, '/v1/agents/quarantine', { segment: 'drone', reason: 'worm' });
    expect(await busyUntilClosed(held)).toBe(true);
    expect(await rejected('quarantined')).toBeGreaterThan(before);
  });
});
