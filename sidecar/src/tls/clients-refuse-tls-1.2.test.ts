import { createServer, type Server, type TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import type { TlsMinVersion } from '@airlock/common/config';
import { boundPort, closeServer } from '@airlock/common/net';
import { IdentityServiceClient } from '@airlock/proto/identity/v1';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials } from '../controlplane/credentials.ts';
import { UpstreamPools } from '../outbound/upstream-pools.ts';
import { createTestCa } from '../testing/certs.ts';
import { svidFor } from '../testing/fakes.ts';

const TD = 'airlock.test';
const CONTROL_PLANE = `spiffe://${TD}/ns/airlock-system/sa/airlock-control-plane`;
const PEER = `spiffe://${TD}/ns/demo/sa/peer`;
const SELF = `spiffe://${TD}/ns/demo/sa/self`;

/**
 * The sidecar's TLS clients (gRPC to the control plane, mTLS to peer sidecars) against a server
 * that speaks TLS 1.2 at most, as a downgraded or impersonating endpoint would: by default the
 * handshake fails; with tlsMinVersion TLSv1.2 it completes.
 */
describe("the sidecar's TLS clients", () => {
  const ca = createTestCa();
  let server: Server | undefined;
  afterEach(async () => {
    if (server !== undefined) await closeServer(server);
    server = undefined;
  });

  /** A TLS 1.2-only server presenting `id`; resolves with how the first handshake ended. */
  async function tls12Server(id: string): Promise<{ port: number; outcome: Promise<string> }> {
    const leaf = ca.issue({ uris: [id] });
    const s = createServer({ cert: leaf.certPem, key: leaf.keyPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: false, maxVersion: 'TLSv1.2', ALPNProtocols: ['h2', 'http/1.1'] });
    server = s;
    const outcome = new Promise<string>((resolve) => {
      s.on('secureConnection', (socket: TLSSocket) => {
        resolve(`handshake ${String(socket.getProtocol())}`);
        socket.destroy();
      });
      s.on('tlsClientError', (err: Error) => resolve(`refused: ${err.message}`));
    });
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    return { port: boundPort(s), outcome };
  }

  describe.each<[string, TlsMinVersion | undefined, RegExp]>([
    ['by default', undefined, /^refused: .*(protocol|version)/i],
    ['with tlsMinVersion TLSv1.2', 'TLSv1.2', /^handshake TLSv1\.2$/],
  ])('%s', (_name, minVersion, expected) => {
    it('gRPC to the control plane', async () => {
      const { port, outcome } = await tls12Server(CONTROL_PLANE);
      const svid = svidFor(ca, SELF);
      const client = new IdentityServiceClient(`127.0.0.1:${port}`, controlPlaneCredentials(ca.certPem, CONTROL_PLANE, minVersion ?? 'TLSv1.3', svid), CONTROL_PLANE_CHANNEL_OPTIONS);
      try {
        client.waitForReady(Date.now() + 10_000, () => undefined);
        expect(await outcome).toMatch(expected);
      } finally {
        client.close();
      }
    });

    it('mTLS to a peer sidecar', async () => {
      const { port, outcome } = await tls12Server(PEER);
      const pools = minVersion === undefined ? new UpstreamPools() : new UpstreamPools(minVersion);
      try {
        const pool = pools.get({ address: `127.0.0.1:${port}`, spiffeId: PEER }, svidFor(ca, SELF));
        void pool.request({ method: 'GET', path: '/' }).catch(() => undefined);
        expect(await outcome).toMatch(expected);
      } finally {
        await pools.close();
      }
    });
  });
});
