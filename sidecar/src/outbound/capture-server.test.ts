import type { Server } from 'node:http';
import { connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { createTestCa } from '../testing/certs.ts';
import { allow, deny, FakeAuthorizer, loopbackDestinations, quietLogger, StaticSvidSource, startEchoApp, svidFor, testMetrics, type EchoRequest } from '../testing/fakes.ts';
import { realClientHello } from '../testing/client-hello.ts';
import { rawRequest } from '../testing/http-client.ts';
import { createCaptureServer } from './capture-server.ts';
import { createOutboundServer } from './outbound-server.ts';
import { UpstreamPools } from './upstream-pools.ts';

const A = 'spiffe://airlock.test/ns/demo/sa/alice';

/** Raw bytes to a port; everything answered until the server closes. */
function exchange(port: number, bytes: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    // Half-closed after the bytes: the server answers, then closes.
    const socket = connect(port, '127.0.0.1', () => socket.end(bytes));
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('close', () => resolve(text));
    socket.on('error', reject);
  });
}

/** A TLS handshake through the capture port: the error code node:tls reports (the alert the sidecar sent), or 'connected'. */
function tlsAttempt(port: number, servername: string | undefined): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...(servername === undefined ? {} : { servername }) });
    socket.on('secureConnect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

const status = (text: string): number => Number(text.slice(9, 12));

describe('the capture listener of transparent mode', () => {
  const ca = createTestCa();
  const identity = new StaticSvidSource(svidFor(ca, A));
  const authorizer = new FakeAuthorizer(() => allow());
  const { metrics } = testMetrics();
  const meshPools = new UpstreamPools();
  const { destinations, external } = loopbackDestinations();
  const deps = { identity, authorizer, meshPools, external, destinations, metrics, logger: quietLogger() };
  let capture: ReturnType<typeof createCaptureServer>;
  let proxy: Server;
  let port: number;
  let app: { server: Server; port: number };

  beforeAll(async () => {
    app = await startEchoApp();
    capture = createCaptureServer(deps);
    await listen(capture, { host: '127.0.0.1', port: 0 });
    port = boundPort(capture);
    proxy = createOutboundServer(deps);
    await listen(proxy, { host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await closeServer(capture);
    await closeServer(proxy);
    await closeServer(app.server);
    await external.destroy();
    await meshPools.close();
  });
  beforeEach(() => {
    authorizer.requests.length = 0;
    authorizer.decide = () => allow();
  });

  it('judges an origin-form request by its Host, as the proxy judges the same absolute-form request, and forwards it there', async () => {
    const body = 'x'.repeat(100_000);
    const res = await rawRequest(port, { method: 'POST', target: '/v1/search?q=cats', headers: { host: `127.0.0.1:${app.port}`, 'x-tenant': 'a', 'content-type': 'text/plain' }, body });
    expect(res.status).toBe(200);
    const echo = JSON.parse(res.body) as EchoRequest;
    expect(echo).toMatchObject({ method: 'POST', url: '/v1/search?q=cats', body });
    expect(echo.headers.host).toBe(`127.0.0.1:${app.port}`);
    const viaProxy = await rawRequest(boundPort(proxy), { method: 'POST', target: `http://127.0.0.1:${app.port}/v1/search?q=cats`, headers: { 'x-tenant': 'a', 'content-type': 'text/plain' }, body });
    expect(viaProxy.status).toBe(200);
    expect(authorizer.requests).toHaveLength(2);
    expect(authorizer.requests[0]).toEqual(authorizer.requests[1]);
    expect(authorizer.requests[0]).toMatchObject({ direction: 'outbound', sourceId: A, host: '127.0.0.1', port: app.port, method: 'POST', path: '/v1/search?q=cats' });
  });

  it('answers a denial with the 403 of the proxy', async () => {
    authorizer.decide = () => deny('alice may not call bob');
    const res = await rawRequest(port, { target: '/v1/x', headers: { host: 'bob.demo' } });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'denied', reason: 'alice may not call bob' });
    expect(authorizer.requests[0]).toMatchObject({ host: 'bob.demo', port: 80, path: '/v1/x' });
  });

  it('judges a Host that is an IP literal in its canonical spelling', async () => {
    authorizer.decide = () => deny();
    for (const host of ['2852039166', '0xA9FEA9FE', '169.254.169.254.', '[::ffff:a9fe:a9fe]']) {
      const res = await rawRequest(port, { target: '/latest/meta-data/', headers: { host } });
      expect(res.status, host).toBe(403);
    }
    expect(authorizer.requests.map((r) => `${r.host}:${r.port}`)).toEqual(Array.from({ length: 4 }, () => '169.254.169.254:80'));
  });

  it('refuses a request whose destination is not named once and plainly: no Host, two, a bad one, no origin-form path', async () => {
    const cases = [
      'GET / HTTP/1.0\r\n\r\n',
      'GET / HTTP/1.1\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: user@evil.example.com\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.example.com/x\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a.example.com:0\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: \r\n\r\n',
      'GET /a\\..\\b HTTP/1.1\r\nHost: a.example.com\r\n\r\n',
      'GET /a#b HTTP/1.1\r\nHost: a.example.com\r\n\r\n',
      'OPTIONS * HTTP/1.1\r\nHost: a.example.com\r\n\r\n',
    ];
    for (const request of cases) {
      const answer = await exchange(port, request);
      expect(status(answer), request).toBe(400);
      expect(answer, request).toContain('"error":"bad_request"');
    }
    expect(authorizer.requests).toHaveLength(0);
  });

  it('refuses TCP that is neither HTTP/1.x nor TLS (an SSH hello, HTTP/2 prior knowledge) without a decision', async () => {
    for (const bytes of ['SSH-2.0-OpenSSH_9.6\r\n', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', '\x00\x00\x00\x08\x04\xd2\x16\x2f']) {
      expect(status(await exchange(port, bytes)), JSON.stringify(bytes)).toBe(400);
    }
    expect(authorizer.requests).toHaveLength(0);
  });

  it('keeps refusing an origin-form request on the proxy port (it is not a capture listener)', async () => {
    const res = await rawRequest(boundPort(proxy), { target: '/v1/x', headers: { host: `127.0.0.1:${app.port}` } });
    expect(res.status).toBe(400);
    expect(authorizer.requests).toHaveLength(0);
  });

  it('judges a TLS connection by its SNI as CONNECT <SNI>:443, and a denial is a fatal access_denied alert', async () => {
    authorizer.decide = () => deny();
    expect(await tlsAttempt(port, 'api.example.com')).toBe('ERR_SSL_TLSV1_ALERT_ACCESS_DENIED');
    expect(authorizer.requests).toEqual([{ direction: 'outbound', sourceId: A, host: 'api.example.com', port: 443, method: 'CONNECT', path: '', headers: { entries: [], incomplete: false } }]);
  });

  it('never tunnels a captured TLS connection to a host whose policy says tls: originate, or inspect without an egress CA (its rules would go unjudged)', async () => {
    authorizer.decide = () => ({ ...allow(), tls: 'originate' });
    // A bad_request alert (unrecognized_name), no tunnel to the host.
    expect(await tlsAttempt(port, 'api.example.com')).toBe('ERR_SSL_TLSV1_UNRECOGNIZED_NAME');
    authorizer.decide = () => ({ ...allow(), tls: 'inspect' });
    expect(await tlsAttempt(port, 'api.example.com')).toBe('ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR');
  });

  it('reads a ClientHello that arrives a few bytes at a time', async () => {
    authorizer.decide = () => deny();
    const hello = await realClientHello('slow.example.com');
    const answer = await new Promise<Buffer>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      socket.setNoDelay(true);
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('close', () => resolve(Buffer.concat(chunks)));
      socket.on('error', reject);
      void (async () => {
        for (let at = 0; at < hello.length; at += 7) {
          await new Promise<void>((done) => socket.write(hello.subarray(at, at + 7), () => done()));
          await new Promise<void>((done) => setImmediate(done));
        }
      })();
    });
    // A fatal access_denied alert record, and the connection closed.
    expect([...answer]).toEqual([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49]);
    expect(authorizer.requests).toMatchObject([{ host: 'slow.example.com', port: 443, method: 'CONNECT' }]);
  });

  it('serves an absolute-form request (an app configured with a proxy elsewhere) by its URL, with the proxy port\'s Host rule', async () => {
    const ok = await rawRequest(port, { target: `http://127.0.0.1:${app.port}/abs` });
    expect(ok.status).toBe(200);
    const mismatch = await exchange(port, `GET http://127.0.0.1:${app.port}/abs HTTP/1.1\r\nHost: other.example.com\r\n\r\n`);
    expect(status(mismatch)).toBe(400);
    expect(authorizer.requests).toHaveLength(1);
  });

  it('refuses TLS without SNI with unrecognized_name and no decision', async () => {
    expect(await tlsAttempt(port, undefined)).toBe('ERR_SSL_TLSV1_UNRECOGNIZED_NAME');
    expect(authorizer.requests).toHaveLength(0);
  });

  it('refuses TLS to a mesh host (the sidecar adds mTLS to plain HTTP)', async () => {
    authorizer.decide = () => allow({ address: '127.0.0.1:1', spiffeId: 'spiffe://airlock.test/ns/demo/sa/bob' });
    expect(await tlsAttempt(port, 'bob.demo')).toBe('ERR_SSL_TLSV1_UNRECOGNIZED_NAME');
    expect(authorizer.requests).toHaveLength(1);
  });

  it('answers an allowed TLS destination that cannot be reached with internal_error', async () => {
    // Nothing listens on 127.0.0.1:443 here (no root needed to know it: the dial fails).
    expect(await tlsAttempt(port, 'localhost')).toBe('ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR');
  });
});
