import { X509Certificate } from 'node:crypto';
import type { Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Pool } from 'undici';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { createTestCa, type KeyAndCert } from '../testing/certs.ts';
import { allow, deny, FakeAuthorizer, loopbackDestinations, quietLogger, StaticSvidSource, startEchoApp, svidFor, testMetrics, type EchoRequest } from '../testing/fakes.ts';
import { rawRequest } from '../testing/http-client.ts';
import { createOutboundServer } from '../outbound/outbound-server.ts';
import { UpstreamPools } from '../outbound/upstream-pools.ts';
import { expectSpiffeId } from '../tls/peer-identity.ts';
import { createInboundServer } from './inbound-server.ts';

const A = 'spiffe://airlock.test/ns/demo/sa/alice';
const B = 'spiffe://airlock.test/ns/demo/sa/bob';

describe('inbound mTLS listener', () => {
  const ca = createTestCa();
  const identity = new StaticSvidSource(svidFor(ca, B));
  const authorizer = new FakeAuthorizer(() => allow());
  const { registry, metrics } = testMetrics();
  let app: { server: Server; port: number };
  let appPool: Pool;
  let inbound: HttpsServer;
  let inboundPort: number;

  beforeAll(async () => {
    app = await startEchoApp();
    appPool = new Pool(`http://127.0.0.1:${app.port}`);
    inbound = createInboundServer({ identity, authorizer, app: appPool, metrics, logger: quietLogger() });
    await listen(inbound, { host: '127.0.0.1', port: 0 });
    inboundPort = boundPort(inbound);
  });
  afterAll(async () => {
    await closeServer(inbound);
    await closeServer(app.server);
    await appPool.destroy();
  });
  beforeEach(() => {
    authorizer.requests.length = 0;
    authorizer.decide = () => allow();
  });

  function peerPool(client: KeyAndCert, trust = ca.certPem): Pool {
    return new Pool(`https://127.0.0.1:${inboundPort}`, {
      connect: { ca: trust, cert: client.certPem, key: client.keyPem, checkServerIdentity: expectSpiffeId(B) },
    });
  }

  it('authorizes with the peer ID from the handshake and forwards with XFCC set by the sidecar', async () => {
    const pool = peerPool(ca.issue({ uris: [A] }));
    try {
      const res = await pool.request({
        path: '/v1/search?q=1',
        method: 'GET',
        headers: { host: 'bob.demo', 'x-forwarded-client-cert': 'By=spiffe://forged;URI=spiffe://forged', 'X-Tenant': 'a' },
      });
      expect(res.statusCode).toBe(200);
      const echo = (await res.body.json()) as EchoRequest;
      expect(echo.headers['x-forwarded-client-cert']).toBe(`By=${B};URI=${A}`);
      expect(echo.headers.host).toBe('bob.demo');
      expect(echo.url).toBe('/v1/search?q=1');
      expect(authorizer.requests).toEqual([{ direction: 'inbound', sourceId: A, destinationId: B, host: 'bob.demo', port: 80, method: 'GET', path: '/v1/search?q=1', headers: { entries: [{ name: 'x-tenant', value: 'a' }], incomplete: false } }]);
    } finally {
      await pool.destroy();
    }
  });

  it('answers a DENY with 403 JSON', async () => {
    authorizer.decide = () => deny('bob does not take calls from alice');
    const pool = peerPool(ca.issue({ uris: [A] }));
    try {
      const res = await pool.request({ path: '/', method: 'GET', headers: { host: 'bob.demo:8080' } });
      expect(res.statusCode).toBe(403);
      expect(await res.body.json()).toEqual({ error: 'denied', reason: 'bob does not take calls from alice', policy: 'test-deny', policyVersion: 1, rule: 'rules[0]', decisionId: 'd-deny' });
      expect(authorizer.requests[0]).toMatchObject({ host: 'bob.demo', port: 8080 });
    } finally {
      await pool.destroy();
    }
  });

  /** Opens mTLS with `client`, sends a request, and reports whether any HTTP answer came back. */
  function tryRequest(client: KeyAndCert): Promise<string> {
    return new Promise((resolve) => {
      let data = '';
      const socket = tlsConnect({ host: '127.0.0.1', port: inboundPort, ca: ca.certPem, cert: client.certPem, key: client.keyPem, checkServerIdentity: () => undefined });
      socket.on('secureConnect', () => socket.write('GET / HTTP/1.1\r\nHost: bob.demo\r\n\r\n'));
      socket.on('data', (c: Buffer) => (data += c.toString()));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(data));
    });
  }

  it('refuses a client certificate with two URI SANs before any request', async () => {
    const answer = await tryRequest(ca.issue({ uris: [A, 'spiffe://airlock.test/ns/demo/sa/mallory'] }));
    expect(answer).toBe('');
    expect(authorizer.requests).toHaveLength(0);
    expect(await registry.getSingleMetricAsString('airlock_sidecar_inbound_rejected_total')).toMatch(/reason="invalid_svid"} 1/);
  });

  it('refuses a client certificate from a foreign CA', async () => {
    const foreign = createTestCa('Foreign CA');
    const answer = await tryRequest(foreign.issue({ uris: [A] }));
    expect(answer).toBe('');
    expect(authorizer.requests).toHaveLength(0);
    expect(await registry.getSingleMetricAsString('airlock_sidecar_inbound_rejected_total')).toMatch(/reason="handshake_failed"} [1-9]/);
  });

  it('serves a new SVID after it changes (setSecureContext)', async () => {
    const renewed = svidFor(ca, B);
    identity.set(renewed);
    const client = ca.issue({ uris: [A] });
    const presented = await new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: inboundPort, ca: ca.certPem, cert: client.certPem, key: client.keyPem, checkServerIdentity: expectSpiffeId(B) });
      socket.on('secureConnect', () => {
        resolve(socket.getPeerX509Certificate()?.fingerprint256 ?? '');
        socket.destroy();
      });
      socket.on('error', reject);
    });
    expect(presented).toBe(new X509Certificate(renewed.certChainPem).fingerprint256);
  });
});

describe('outbound → inbound over mTLS (both with in-process authorizers)', () => {
  const ca = createTestCa();
  const alice = new StaticSvidSource(svidFor(ca, A));
  const bob = new StaticSvidSource(svidFor(ca, B));
  const { metrics } = testMetrics();
  const logger = quietLogger();
  const inboundAuthz = new FakeAuthorizer(() => allow());
  const outboundAuthz = new FakeAuthorizer(() => allow());
  const meshPools = new UpstreamPools();
  const { destinations, external } = loopbackDestinations();
  let app: { server: Server; port: number };
  let appPool: Pool;
  let inbound: HttpsServer;
  let outbound: Server;

  beforeAll(async () => {
    app = await startEchoApp();
    appPool = new Pool(`http://127.0.0.1:${app.port}`);
    inbound = createInboundServer({ identity: bob, authorizer: inboundAuthz, app: appPool, metrics, logger });
    await listen(inbound, { host: '127.0.0.1', port: 0 });
    outbound = createOutboundServer({ identity: alice, authorizer: outboundAuthz, meshPools, external, destinations, metrics, logger });
    await listen(outbound, { host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await closeServer(outbound);
    await closeServer(inbound);
    await closeServer(app.server);
    await Promise.all([appPool.destroy(), external.destroy(), meshPools.close()]);
  });

  it('carries a mesh call to the peer app with the caller identity in XFCC', async () => {
    outboundAuthz.decide = () => allow({ address: `127.0.0.1:${boundPort(inbound)}`, spiffeId: B });
    const res = await rawRequest(boundPort(outbound), { method: 'POST', target: 'http://bob.demo/v1/tools?x=1', body: '{"q":1}', headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(200);
    const echo = JSON.parse(res.body) as EchoRequest;
    expect(echo.headers['x-forwarded-client-cert']).toBe(`By=${B};URI=${A}`);
    expect(echo.headers.host).toBe('bob.demo');
    expect(echo.body).toBe('{"q":1}');
    expect(inboundAuthz.requests.at(-1)).toMatchObject({ sourceId: A, destinationId: B, host: 'bob.demo', port: 80, method: 'POST', path: '/v1/tools?x=1' });
  });

  it('refuses (502) an upstream that presents a different SPIFFE ID than the decision names', async () => {
    outboundAuthz.decide = () => allow({ address: `127.0.0.1:${boundPort(inbound)}`, spiffeId: 'spiffe://airlock.test/ns/demo/sa/carol' });
    const before = inboundAuthz.requests.length;
    const res = await rawRequest(boundPort(outbound), { target: 'http://carol.demo/' });
    expect(res.status).toBe(502);
    const body = JSON.parse(res.body) as { error: string; reason: string };
    expect(body.error).toBe('upstream_unavailable');
    expect(body.reason).toContain('expected spiffe://airlock.test/ns/demo/sa/carol');
    expect(inboundAuthz.requests.length).toBe(before);
  });
});

describe('inbound listener limits', () => {
  it('closes a connection that never sends its ClientHello once tlsHandshakeTimeout passes (it could hold the port forever)', async () => {
    const ca = createTestCa();
    const { metrics } = testMetrics();
    const limits = { maxConnections: 10, headersTimeoutMs: 1000, requestTimeoutMs: 1000, tlsHandshakeTimeoutMs: 300, tunnelIdleTimeoutMs: 1000 };
    const server = createInboundServer({ identity: new StaticSvidSource(svidFor(ca, 'spiffe://airlock.test/ns/demo/sa/b')), authorizer: new FakeAuthorizer(() => deny()), app: new Pool('http://127.0.0.1:1'), metrics, logger: quietLogger(), limits });
    await listen(server, { host: '127.0.0.1', port: 0 });
    try {
      const socket = netConnect(boundPort(server), '127.0.0.1');
      socket.on('error', () => undefined);
      const outcome = await new Promise((resolve) => {
        socket.on('close', () => resolve('closed'));
        setTimeout(() => resolve('still open'), 10_000);
      });
      socket.destroy();
      expect(outcome).toBe('closed');
      expect((await metrics.inboundRejected.get()).values.find((v) => v.labels.reason === 'handshake_failed')?.value).toBe(1);
    } finally {
      await closeServer(server);
    }
  });
});
