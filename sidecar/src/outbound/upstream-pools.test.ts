import { X509Certificate } from 'node:crypto';
import { createServer } from 'node:https';
import { TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { createTestCa } from '../testing/certs.ts';
import { svidFor } from '../testing/fakes.ts';
import { UpstreamPools } from './upstream-pools.ts';

const TD = 'airlock.test';

describe('UpstreamPools', () => {
  const ca = createTestCa();
  const peerId = `spiffe://${TD}/ns/demo/sa/researcher`;
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** A peer sidecar's inbound port: mTLS, answering each request with the serial of the client certificate it was given. */
  async function peer(): Promise<string> {
    const serving = ca.issue({ uris: [peerId] });
    const server = createServer({ ca: ca.certPem, cert: serving.certPem, key: serving.keyPem, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const cert = req.socket instanceof TLSSocket ? req.socket.getPeerX509Certificate() : undefined;
      res.end(cert?.serialNumber ?? 'none');
    });
    await listen(server, { host: '127.0.0.1', port: 0 });
    cleanups.push(() => closeServer(server));
    return `127.0.0.1:${boundPort(server)}`;
  }

  async function serialSeen(pools: UpstreamPools, address: string, svid: ReturnType<typeof svidFor>): Promise<string> {
    const res = await pools.get({ address, spiffeId: peerId }, svid).request({ method: 'GET', path: '/' });
    return res.body.text();
  }

  it('presents the new SVID on calls made after a renewal (the pools are replaced), and keeps one pool per SVID', async () => {
    const address = await peer();
    const pools = new UpstreamPools();
    cleanups.push(() => pools.close());
    const first = svidFor(ca, `spiffe://${TD}/ns/demo/sa/planner`);
    const renewed = svidFor(ca, `spiffe://${TD}/ns/demo/sa/planner`);
    const serialOf = (pem: string): string => new X509Certificate(pem).serialNumber;
    expect(await serialSeen(pools, address, first)).toBe(serialOf(first.certChainPem));
    expect(pools.get({ address, spiffeId: peerId }, first)).toBe(pools.get({ address, spiffeId: peerId }, first));
    expect(await serialSeen(pools, address, renewed)).toBe(serialOf(renewed.certChainPem));
    expect(await serialSeen(pools, address, renewed)).toBe(serialOf(renewed.certChainPem));
  });

  it('refuses a peer that is not the identity the decision named', async () => {
    const address = await peer();
    const pools = new UpstreamPools();
    cleanups.push(() => pools.close());
    const svid = svidFor(ca, `spiffe://${TD}/ns/demo/sa/planner`);
    await expect(pools.get({ address, spiffeId: `spiffe://${TD}/ns/demo/sa/payments` }, svid).request({ method: 'GET', path: '/' })).rejects.toThrow(/payments|SPIFFE/);
  });

  it('drops a pool once its peer has closed every connection, and keeps at most maxPools', async () => {
    const svid = svidFor(ca, `spiffe://${TD}/ns/demo/sa/planner`);
    const pools = new UpstreamPools(undefined, 3);
    cleanups.push(() => pools.close());
    const servers = await Promise.all(Array.from({ length: 5 }, async () => {
      const serving = ca.issue({ uris: [peerId] });
      const server = createServer({ ca: ca.certPem, cert: serving.certPem, key: serving.keyPem, requestCert: true, rejectUnauthorized: true }, (_req, res) => res.end('ok'));
      await listen(server, { host: '127.0.0.1', port: 0 });
      cleanups.push(() => closeServer(server));
      return { server, address: `127.0.0.1:${boundPort(server)}` };
    }));
    const call = async (address: string): Promise<string> => (await pools.get({ address, spiffeId: peerId }, svid).request({ method: 'GET', path: '/' })).body.text();
    for (const { address } of servers) expect(await call(address)).toBe('ok');
    // Five peers called, three pools kept: the oldest were closed (their calls had finished).
    expect(pools.size).toBe(3);
    // The peers go away (pods deleted): their kept-alive connections close, and so do the pools.
    for (const { server } of servers) server.closeAllConnections();
    for (let i = 0; i < 100 && pools.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(pools.size).toBe(0);
    // A peer called again gets a new pool that works.
    expect(await call(servers[4]?.address ?? '')).toBe('ok');
    expect(pools.size).toBe(1);
  });
});
