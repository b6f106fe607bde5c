import { createServer, request, type Server } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { createTestCa } from '../testing/certs.ts';
import { allow, deny, FakeAuthorizer, loopbackDestinations, quietLogger, StaticSvidSource, startEchoApp, startTcpEcho, svidFor, testMetrics, type EchoRequest } from '../testing/fakes.ts';
import { rawRequest } from '../testing/http-client.ts';
import { createOutboundServer } from './outbound-server.ts';
import { UpstreamPools } from './upstream-pools.ts';

const A = 'spiffe://airlock.test/ns/demo/sa/alice';

describe('outbound proxy', () => {
  const ca = createTestCa();
  const identity = new StaticSvidSource(svidFor(ca, A));
  const authorizer = new FakeAuthorizer(() => allow());
  const { registry, metrics } = testMetrics();
  const meshPools = new UpstreamPools();
  const { destinations, external } = loopbackDestinations();
  let proxy: Server;
  let proxyPort: number;
  let app: { server: Server; port: number };

  beforeAll(async () => {
    app = await startEchoApp();
    proxy = createOutboundServer({ identity, authorizer, meshPools, external, destinations, metrics, logger: quietLogger() });
    await listen(proxy, { host: '127.0.0.1', port: 0 });
    proxyPort = boundPort(proxy);
  });
  afterAll(async () => {
    await closeServer(proxy);
    await closeServer(app.server);
    await external.destroy();
    await meshPools.close();
  });
  beforeEach(() => {
    authorizer.requests.length = 0;
    authorizer.decide = () => allow();
    identity.svid = svidFor(ca, A);
  });

  it('authorizes and forwards an absolute-form request to an external host, keeping Host and the query', async () => {
    const res = await rawRequest(proxyPort, { target: `http://127.0.0.1:${app.port}/v1/search?q=cats`, headers: { host: `127.0.0.1:${app.port}`, authorization: 'Bearer secret', 'X-Tenant': 'a' } });
    expect(res.status).toBe(200);
    const echo = JSON.parse(res.body) as EchoRequest;
    expect(echo.url).toBe('/v1/search?q=cats');
    expect(echo.headers.host).toBe(`127.0.0.1:${app.port}`);
    expect(authorizer.requests).toEqual([{ direction: 'outbound', sourceId: A, host: '127.0.0.1', port: app.port, method: 'GET', path: '/v1/search?q=cats', headers: { entries: [{ name: 'x-tenant', value: 'a' }], incomplete: false } }]);
    // hop-by-hop headers of the response are not passed back
    expect(res.headers['keep-alive']).toBeUndefined();
    expect(res.headers['x-app']).toBe('echo');
  });

  it('strips hop-by-hop headers, those named in Connection, any x-forwarded-client-cert and names with an underscore', async () => {
    const res = await rawRequest(proxyPort, {
      target: `http://127.0.0.1:${app.port}/h`,
      headers: {
        connection: 'keep-alive, x-drop-me',
        'keep-alive': 'timeout=5',
        'x-drop-me': '1',
        'proxy-authorization': 'Basic abc',
        'proxy-connection': 'keep-alive',
        te: 'trailers',
        'x-forwarded-client-cert': 'By=spiffe://evil;URI=spiffe://forged',
        x_forwarded_client_cert: 'By=spiffe://evil;URI=spiffe://forged',
        'x-keep': 'yes',
      },
    });
    expect(res.status).toBe(200);
    const h = (JSON.parse(res.body) as EchoRequest).headers;
    for (const name of ['x-drop-me', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'x-forwarded-client-cert', 'x_forwarded_client_cert']) expect(h[name], name).toBeUndefined();
    expect(h['x-keep']).toBe('yes');
  });

  it('streams a request body through', async () => {
    const body = 'x'.repeat(200_000);
    const res = await rawRequest(proxyPort, { method: 'POST', target: `http://127.0.0.1:${app.port}/upload`, headers: { 'content-type': 'text/plain' }, body });
    expect(res.status).toBe(200);
    expect((JSON.parse(res.body) as EchoRequest).body).toBe(body);
  });

  it('answers a DENY with 403 and the decision', async () => {
    authorizer.decide = () => deny('alice may not call bob');
    const res = await rawRequest(proxyPort, { target: `http://bob.demo/v1/x` });
    expect(res.status).toBe(403);
    expect(res.headers['content-type']).toBe('application/json');
    expect(JSON.parse(res.body)).toEqual({ error: 'denied', reason: 'alice may not call bob', policy: 'test-deny', policyVersion: 1, rule: 'rules[0]', decisionId: 'd-deny' });
    expect(authorizer.requests[0]).toMatchObject({ host: 'bob.demo', port: 80, path: '/v1/x' });
  });

  it('fails closed with 503 when no decision can be had', async () => {
    authorizer.decide = () => Promise.reject(new AirlockError(ErrorCode.AuthzUnavailable, 'deadline exceeded'));
    const res = await rawRequest(proxyPort, { target: `http://127.0.0.1:${app.port}/` });
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'authorization_unavailable' });
  });

  it('answers 503 not_ready before an SVID is held, without asking for a decision', async () => {
    identity.svid = undefined;
    const res = await rawRequest(proxyPort, { target: `http://127.0.0.1:${app.port}/` });
    expect(res.status).toBe(503);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'not_ready' });
    expect(authorizer.requests).toHaveLength(0);
  });

  it('refuses an origin-form request with 400', async () => {
    const res = await rawRequest(proxyPort, { target: '/v1/search' });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'bad_request' });
    expect(authorizer.requests).toHaveLength(0);
  });

  it('answers 502 when an allowed external upstream is unreachable', async () => {
    const closed = await startEchoApp();
    await closeServer(closed.server);
    const res = await rawRequest(proxyPort, { target: `http://127.0.0.1:${closed.port}/` });
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'upstream_unavailable' });
  });

  it('answers 500 internal (not 502) for a failure inside the sidecar', async () => {
    authorizer.decide = () => Promise.reject(new TypeError('a bug'));
    const res = await rawRequest(proxyPort, { target: `http://127.0.0.1:${app.port}/` });
    expect(res.status).toBe(500);
    expect(JSON.parse(res.body)).toEqual({ error: 'internal', reason: 'internal error in the sidecar' });
    const text = await registry.getSingleMetricAsString('airlock_sidecar_requests_total');
    expect(text).toMatch(/direction="outbound",outcome="internal"} 1/);
  });

  it('answers 502 when an MCP upstream cuts its tools/list answer short', async () => {
    const mcp = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
        res.write('{"jsonrpc":"2.0","id":1,', () => res.destroy());
      });
    });
    await listen(mcp, { host: '127.0.0.1', port: 0 });
    try {
      const body = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}';
      const res = await rawRequest(proxyPort, { method: 'POST', target: `http://127.0.0.1:${boundPort(mcp)}/mcp`, headers: { 'content-type': 'application/json', 'content-length': String(body.length) }, body });
      expect(res.status).toBe(502);
      expect(JSON.parse(res.body)).toMatchObject({ error: 'upstream_unavailable' });
    } finally {
      await closeServer(mcp);
    }
  });

  it('tunnels an allowed CONNECT to an external host', async () => {
    const echo = await startTcpEcho();
    try {
      const socket = connect(proxyPort, '127.0.0.1');
      socket.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\n\r\n`);
      let received = '';
      const established = await new Promise<string>((resolve) => {
        socket.on('data', (c: Buffer) => {
          received += c.toString();
          if (received.includes('\r\n\r\n')) resolve(received);
        });
      });
      expect(established.startsWith('HTTP/1.1 200 Connection Established')).toBe(true);
      received = '';
      socket.write('ping through the tunnel');
      await expect.poll(() => received).toBe('ping through the tunnel');
      socket.destroy();
      expect(authorizer.requests[0]).toEqual({ direction: 'outbound', sourceId: A, host: '127.0.0.1', port: echo.port, method: 'CONNECT', path: '', headers: { entries: [], incomplete: false } });
    } finally {
      await closeServer(echo.server);
    }
  });

  /** A proxy serving CONNECT to `ports` as HTTP; `bytes` sent at once (a CONNECT and what follows), the answer read until close. */
  async function throughTunnel(ports: readonly number[], bytes: string): Promise<string> {
    const p = createOutboundServer({ identity, authorizer, meshPools, external, destinations, metrics, logger: quietLogger(), plainHttpPorts: new Set(ports) });
    await listen(p, { host: '127.0.0.1', port: 0 });
    try {
      const socket = connect(boundPort(p), '127.0.0.1');
      socket.write(bytes);
      let text = '';
      socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
      await new Promise((resolve) => socket.on('close', resolve));
      return text;
    } finally {
      await closeServer(p);
    }
  }
  const answers = (text: string): string[] => text.split(/(?=HTTP\/1\.1 \d{3} )/);

  it('serves a CONNECT to a plain-HTTP port as HTTP: each request in the tunnel decided on its own, a denial a 403 JSON on that request, the tunnel still usable', async () => {
    const a = `127.0.0.1:${app.port}`;
    let n = 0;
    // The second request is decided after a "policy change": denied; the third allowed again.
    authorizer.decide = () => (++n === 2 ? deny('no policy allows POST /b') : allow());
    const count = async (outcome: string): Promise<number> => Number(new RegExp(`direction="outbound",outcome="${outcome}"} (\\d+)`).exec(await registry.getSingleMetricAsString('airlock_sidecar_requests_total'))?.[1] ?? 0);
    const [allowedBefore, deniedBefore] = [await count('allowed'), await count('denied')];
    const text = await throughTunnel([app.port], `CONNECT ${a} HTTP/1.1\r\nHost: ${a}\r\n\r\n` +
      `GET /a?q=1 HTTP/1.1\r\nHost: ${a}\r\n\r\n` +
      // Denied with its body unread: the body is skipped, and the next request read after it.
      `POST /b HTTP/1.1\r\nHost: ${a}\r\nContent-Length: 11\r\n\r\nGET /x HTTP` +
      `POST /c HTTP/1.1\r\nHost: ${a}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi`);
    const [established, first, second, third] = answers(text);
    expect(established).toBe('HTTP/1.1 200 Connection Established\r\n\r\n');
    expect(first).toMatch(/^HTTP\/1\.1 200 /);
    expect(first).toContain('"url":"/a?q=1"'); // the echo app's answer (chunked)
    expect(second).toMatch(/^HTTP\/1\.1 403 /);
    expect(JSON.parse(second?.slice(second.indexOf('\r\n\r\n') + 4) ?? '')).toMatchObject({ error: 'denied', reason: 'no policy allows POST /b' });
    expect(third).toMatch(/^HTTP\/1\.1 200 /);
    // No decision on the CONNECT itself: one per request, each judged as its absolute-form twin.
    expect(authorizer.requests.map((r) => [r.method, r.host, r.port, r.path])).toEqual([['GET', '127.0.0.1', app.port, '/a?q=1'], ['POST', '127.0.0.1', app.port, '/b'], ['POST', '127.0.0.1', app.port, '/c']]);
    // Counted per request (two allowed, one denied); the CONNECT, decided by none, is not counted.
    expect([await count('allowed'), await count('denied')]).toEqual([allowedBefore + 2, deniedBefore + 1]);
  });

  it.each([
    ['a Host naming another authority', (_a: string) => 'GET /x HTTP/1.1\r\nHost: other.example\r\n\r\n', /Host header \(other\.example\) names another authority/],
    ['a Host naming another port', (a: string) => `GET /x HTTP/1.1\r\nHost: ${a.replace(/:\d+$/, ':1')}\r\n\r\n`, /names another authority/],
    ['an absolute-form URL naming another authority', (_a: string) => 'GET http://other.example/x HTTP/1.1\r\nHost: other.example\r\n\r\n', /names other\.example, but its tunnel was opened to 127\.0\.0\.1:\d+/],
    ['two Host headers', (a: string) => `GET /x HTTP/1.1\r\nHost: ${a}\r\nHost: ${a}\r\n\r\n`, /more than one Host header/],
  ])('refuses in a tunnel served as HTTP %s (400), asking no decision', async (_name, request, reason) => {
    const a = `127.0.0.1:${app.port}`;
    const [established, answer] = answers(await throughTunnel([app.port], `CONNECT ${a} HTTP/1.1\r\nHost: ${a}\r\n\r\n${request(a)}`));
    expect(established).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect((JSON.parse(answer?.slice(answer.indexOf('\r\n\r\n') + 4) ?? '') as { reason: string }).reason).toMatch(reason);
    expect(authorizer.requests).toEqual([]);
  });

  it('closes a tunnel served as HTTP on a CONNECT nested in it, and answers 400 to TLS or other bytes there, asking no decision', async () => {
    const a = `127.0.0.1:${app.port}`;
    const nested = answers(await throughTunnel([app.port], `CONNECT ${a} HTTP/1.1\r\nHost: ${a}\r\n\r\nCONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\n\r\nGET / HTTP/1.1\r\nHost: ${a}\r\n\r\n`));
    expect(nested).toHaveLength(1); // the 200 of the outer CONNECT; then the connection is closed
    const tls = answers(await throughTunnel([app.port], `CONNECT ${a} HTTP/1.1\r\nHost: ${a}\r\n\r\n\x16\x03\x01\x00\x05hello`));
    expect(tls[1]).toMatch(/^HTTP\/1\.1 400 /);
    expect(authorizer.requests).toEqual([]);
  });

  it('serves an allowed CONNECT to a mesh host on another port as HTTP, each request decided (the CONNECT too)', async () => {
    let n = 0;
    authorizer.decide = () => (++n === 1 ? allow({ address: '127.0.0.1:1', spiffeId: 'spiffe://airlock.test/ns/demo/sa/bob' }) : deny('no policy allows GET /secret'));
    const [established, answer] = answers(await throughTunnel([], 'CONNECT bob.demo:8080 HTTP/1.1\r\nHost: bob.demo:8080\r\n\r\nGET /secret HTTP/1.1\r\nHost: bob.demo:8080\r\nConnection: close\r\n\r\n'));
    expect(established).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(authorizer.requests.map((r) => [r.method, r.host, r.port, r.path])).toEqual([['CONNECT', 'bob.demo', 8080, ''], ['GET', 'bob.demo', 8080, '/secret']]);
  });

  it('aborts the upstream request when the client goes away', async () => {
    let upstreamClosed = false;
    const slow = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first chunk');
      res.on('close', () => (upstreamClosed = true));
    });
    await listen(slow, { host: '127.0.0.1', port: 0 });
    try {
      const req = request({ host: '127.0.0.1', port: proxyPort, path: `http://127.0.0.1:${boundPort(slow)}/stream`, headers: { host: `127.0.0.1:${boundPort(slow)}` }, agent: false });
      req.on('error', () => undefined);
      req.end();
      await new Promise<void>((resolve) => req.on('response', (res) => res.once('data', () => resolve())));
      req.destroy();
      await expect.poll(() => upstreamClosed, { timeout: 2000 }).toBe(true);
    } finally {
      await closeServer(slow);
    }
  });

  it('passes a tools/list answer that is not a 200 back as sent, asking no filter decision', async () => {
    const error = '{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no tools here"}}';
    const mcp = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(404, { 'content-type': 'application/json', 'x-app': 'mcp' }).end(error));
    });
    await listen(mcp, { host: '127.0.0.1', port: 0 });
    try {
      const body = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}';
      const res = await rawRequest(proxyPort, { method: 'POST', target: `http://127.0.0.1:${boundPort(mcp)}/mcp`, headers: { 'content-type': 'application/json', 'content-length': String(body.length) }, body });
      expect(res.status).toBe(404);
      expect(res.headers['x-app']).toBe('mcp');
      expect(res.body).toBe(error);
      expect(authorizer.requests).toHaveLength(1);
      expect(authorizer.requests[0]?.mcp).toMatchObject({ method: 'tools/list', tool: '' });
    } finally {
      await closeServer(mcp);
    }
  });

  it('counts requests by outcome', async () => {
    const text = await registry.getSingleMetricAsString('airlock_sidecar_requests_total');
    expect(text).toMatch(/direction="outbound",outcome="denied"} [1-9]/);
    expect(text).toMatch(/direction="outbound",outcome="allowed"} [1-9]/);
  });
});
