import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import type { AuthzRequest, Decision, TlsMode } from '../authz/authorizer.ts';
import { createTestCa } from '../testing/certs.ts';
import { allow, deny, FakeAuthorizer, quietLogger, StaticSvidSource, startEchoApp, svidFor, testMetrics } from '../testing/fakes.ts';
import { DestinationCheck, externalAgent } from './destination-check.ts';
import { EgressCa } from './egress-ca.ts';
import { createCaptureServer } from './capture-server.ts';
import { createOutboundServer } from './outbound-server.ts';
import { UpstreamPools } from './upstream-pools.ts';

const A = 'spiffe://airlock.test/ns/demo/sa/alice';

/** An ALLOW naming a TLS mode, as the control plane answers for a host whose policy says `tls:`. */
function allowWith(tls: TlsMode): Decision {
  const d = allow();
  return d.allowed ? { ...d, tls } : d;
}

/** Answers read off a stream one by one (Content-Length framing: what the sidecar and the echo servers send). */
function answersOn(socket: Socket | TLSSocket): () => Promise<{ status: number; head: string; body: string }> {
  let buffered = Buffer.alloc(0);
  const waiting: (() => void)[] = [];
  let closed = false;
  socket.on('data', (c: Buffer) => {
    buffered = Buffer.concat([buffered, c]);
    waiting.splice(0).forEach((w) => w());
  });
  socket.on('close', () => {
    closed = true;
    waiting.splice(0).forEach((w) => w());
  });
  return async () => {
    for (;;) {
      const end = buffered.indexOf('\r\n\r\n');
      if (end !== -1) {
        const head = buffered.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buffered.length >= end + 4 + length) {
          const body = buffered.subarray(end + 4, end + 4 + length).toString('utf8');
          buffered = buffered.subarray(end + 4 + length);
          return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body };
        }
      }
      if (closed) return { status: 0, head: '', body: '' };
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
  };
}

describe('a CONNECT under tls: inspect', () => {
  const meshCa = createTestCa();
  const upstreamCa = createTestCa('Upstream CA');
  const identity = new StaticSvidSource(svidFor(meshCa, A));
  const authorizer = new FakeAuthorizer(() => allow());
  const { metrics } = testMetrics();
  const meshPools = new UpstreamPools();
  // Every name is on loopback here: nothing is resolved by a real resolver.
  const destinations = new DestinationCheck({ forbidCidrs: [], allowCidrs: ['127.0.0.0/8'], ownPorts: () => [], controlPlane: () => [], resolve: () => Promise.resolve(['127.0.0.1']) });
  const external = externalAgent(destinations, quietLogger(), { ca: upstreamCa.certPem, describe: 'the test bundle' });
  const received: string[] = [];
  let egressCa: EgressCa;
  let proxy: Server;
  let proxyPort: number;
  let upstream: HttpsServer;
  let upstreamPort: number;
  let plain: { server: Server; port: number };

  beforeAll(async () => {
    egressCa = await EgressCa.create();
    const cert = upstreamCa.issue({ dnsNames: ['api.example.test'] });
    upstream = createHttpsServer({ key: cert.keyPem, cert: cert.certPem }, (req, res) => {
      received.push(`${req.method ?? ''} ${req.url ?? ''} host=${req.headers.host ?? ''}`);
      res.end(`tls upstream saw ${req.url ?? ''}`);
    });
    await listen(upstream, { host: '127.0.0.1', port: 0 });
    upstreamPort = boundPort(upstream);
    plain = await startEchoApp();
    proxy = createOutboundServer({ identity, authorizer, meshPools, external, destinations, metrics, egressCa, logger: quietLogger() });
    await listen(proxy, { host: '127.0.0.1', port: 0 });
    proxyPort = boundPort(proxy);
  });
  afterAll(async () => {
    await closeServer(proxy);
    await closeServer(upstream);
    await closeServer(plain.server);
    await external.destroy();
    await meshPools.close();
  });
  beforeEach(() => {
    authorizer.requests.length = 0;
    received.length = 0;
    authorizer.decide = (r: AuthzRequest): Decision => (r.method === 'CONNECT' ? allowWith('inspect') : allow());
  });

  /** CONNECT `authority`, then TLS trusting the egress CA with SNI `servername`: a function sending raw requests and reading each answer. */
  async function inspected(authority: string, servername: string): Promise<{ send(request: string): Promise<{ status: number; head: string; body: string }>; close(): void }> {
    const socket = connect(proxyPort, '127.0.0.1');
    const connectAnswer = answersOn(socket);
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
    const established = await connectAnswer();
    expect(established.status).toBe(200);
    socket.removeAllListeners('data');
    const tls = tlsConnect({ socket, servername, ca: egressCa.certPem });
    await new Promise<void>((resolve, reject) => {
      tls.once('secureConnect', resolve);
      tls.once('error', reject);
    });
    const next = answersOn(tls);
    return {
      send: (request) => {
        tls.write(request);
        return next();
      },
      close: () => tls.destroy(),
    };
  }

  it('judges each request inside the agent\'s TLS as the https request it is, and sends it on over verified TLS', async () => {
    const t = await inspected(`api.example.test:${upstreamPort}`, 'api.example.test');
    try {
      const ok = await t.send(`GET /v1/models?x=1 HTTP/1.1\r\nHost: api.example.test:${upstreamPort}\r\nX-Tenant: a\r\n\r\n`);
      expect(ok.status).toBe(200);
      expect(ok.body).toBe('tls upstream saw /v1/models?x=1');
      expect(authorizer.requests.map((r) => [r.method, r.host, r.port, r.path, r.inspected])).toEqual([
        ['CONNECT', 'api.example.test', upstreamPort, '', undefined],
        ['GET', 'api.example.test', upstreamPort, '/v1/models?x=1', true],
      ]);
      expect(authorizer.requests[1]?.headers?.entries).toEqual([{ name: 'x-tenant', value: 'a' }]);
      expect(received).toEqual([`GET /v1/models?x=1 host=api.example.test:${upstreamPort}`]);
    } finally {
      t.close();
    }
  });

  it('a denied request is the 403 JSON inside TLS, and the tunnel serves the next one', async () => {
    const t = await inspected(`api.example.test:${upstreamPort}`, 'api.example.test');
    try {
      authorizer.decide = (r) => (r.method === 'CONNECT' ? allowWith('inspect') : r.path === '/admin' ? deny('no policy allows GET /admin') : allow());
      const no = await t.send(`GET /admin HTTP/1.1\r\nHost: api.example.test:${upstreamPort}\r\n\r\n`);
      expect(no.status).toBe(403);
      expect(JSON.parse(no.body)).toMatchObject({ error: 'denied', reason: 'no policy allows GET /admin' });
      expect((await t.send(`GET /v1/ok HTTP/1.1\r\nHost: api.example.test:${upstreamPort}\r\n\r\n`)).status).toBe(200);
      expect(received).toEqual([`GET /v1/ok host=api.example.test:${upstreamPort}`]);
    } finally {
      t.close();
    }
  });

  it('reads the MCP message of a POST inside TLS for MCP rules, as on any request', async () => {
    const t = await inspected(`api.example.test:${upstreamPort}`, 'api.example.test');
    try {
      authorizer.decide = (r) => (r.method === 'CONNECT' ? allowWith('inspect') : r.mcp !== undefined && 'tool' in r.mcp && r.mcp.tool === 'delete_all' ? deny('no tool delete_all') : allow());
      const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'delete_all', arguments: {} } });
      const r = await t.send(`POST /mcp HTTP/1.1\r\nHost: api.example.test:${upstreamPort}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      expect(r.status).toBe(403);
      expect(authorizer.requests[1]?.mcp).toMatchObject({ method: 'tools/call', tool: 'delete_all' });
      expect(received).toEqual([]);
    } finally {
      t.close();
    }
  });

  it('never sends a request read inside TLS on in clear, whatever the decision on it says', async () => {
    // The CONNECT was inspected; the request's own decision names no tls (the policy changed meanwhile).
    const t = await inspected(`api.example.test:${upstreamPort}`, 'api.example.test');
    try {
      expect((await t.send(`GET /v1/x HTTP/1.1\r\nHost: api.example.test:${upstreamPort}\r\n\r\n`)).body).toBe('tls upstream saw /v1/x');
    } finally {
      t.close();
    }
    // A destination that does not speak TLS is a 502, not a fallback to plain HTTP.
    const p = await inspected(`api.example.test:${plain.port}`, 'api.example.test');
    try {
      const r = await p.send(`GET /v1/x HTTP/1.1\r\nHost: api.example.test:${plain.port}\r\n\r\n`);
      expect(r.status).toBe(502);
      expect(JSON.parse(r.body)).toMatchObject({ error: 'upstream_unavailable', reason: expect.stringMatching(/TLS to api\.example\.test:\d+ failed/) as unknown });
    } finally {
      p.close();
    }
  });

  it('refuses, inside TLS, a Host naming another authority and an absolute-form target, without a decision', async () => {
    const t = await inspected(`api.example.test:${upstreamPort}`, 'api.example.test');
    try {
      for (const request of [
        `GET /v1/x HTTP/1.1\r\nHost: other.example.test:${upstreamPort}\r\n\r\n`,
        'GET /v1/x HTTP/1.1\r\nHost: api.example.test\r\n\r\n',
        `GET https://other.example.test:${upstreamPort}/v1/x HTTP/1.1\r\nHost: api.example.test:${upstreamPort}\r\n\r\n`,
      ]) {
        const r = await t.send(request);
        expect(r.status).toBe(400);
        expect(JSON.parse(r.body)).toMatchObject({ error: 'bad_request' });
      }
      expect(authorizer.requests.map((r) => r.method)).toEqual(['CONNECT']);
      expect(received).toEqual([]);
    } finally {
      t.close();
    }
  });

  it('reads a Host on the https default port (443) as an https URL names it', async () => {
    // Not dialled: the decision denies; what matters is that `api.example.test` and `:443` are one authority.
    authorizer.decide = (r) => (r.method === 'CONNECT' ? allowWith('inspect') : deny());
    const t = await inspected('api.example.test:443', 'api.example.test');
    try {
      expect((await t.send('GET /a HTTP/1.1\r\nHost: API.example.test\r\n\r\n')).status).toBe(403);
      expect((await t.send('GET /a HTTP/1.1\r\nHost: api.example.test:443\r\n\r\n')).status).toBe(403);
    } finally {
      t.close();
    }
  });

  it('a client that does not trust the egress CA fails its handshake, and the tunnel is closed and counted', async () => {
    const count = async (): Promise<number> => (await metrics.egressInspected.get()).values.find((v) => v.labels.result === 'handshake_failed')?.value ?? 0;
    const before = await count();
    for (let i = 0; i < 2; i++) {
      const socket = connect(proxyPort, '127.0.0.1');
      const next = answersOn(socket);
      socket.write(`CONNECT api.example.test:${upstreamPort} HTTP/1.1\r\nHost: api.example.test\r\n\r\n`);
      expect((await next()).status).toBe(200);
      socket.removeAllListeners('data');
      const failure = await new Promise<string>((resolve) => {
        const tls = tlsConnect({ socket, servername: 'api.example.test' });
        tls.once('secureConnect', () => resolve('connected'));
        tls.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      });
      expect(failure).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    }
    await vi.waitFor(async () => expect(await count()).toBe(before + 2));
    expect(received).toEqual([]);
  });

  it('refuses a CONNECT whose decision names a TLS mode this sidecar does not know, rather than tunnelling it', async () => {
    authorizer.decide = () => (allowWith('unknown'));
    const socket = connect(proxyPort, '127.0.0.1');
    const next = answersOn(socket);
    socket.write(`CONNECT api.example.test:${upstreamPort} HTTP/1.1\r\nHost: api.example.test\r\n\r\n`);
    const r = await next();
    socket.destroy();
    expect(r.status).toBe(503);
    expect(received).toEqual([]);
  });

  it('transparent mode: a captured TLS connection under tls: inspect is terminated too, and each request judged inside', async () => {
    const capture = createCaptureServer({ identity, authorizer, meshPools, external, destinations, metrics, egressCa, logger: quietLogger() });
    await listen(capture, { host: '127.0.0.1', port: 0 });
    try {
      // Judged as CONNECT <SNI>:443, the port the app dialled being unknown; the request inside is denied, so nothing is dialled.
      authorizer.decide = (r) => (r.method === 'CONNECT' ? allowWith('inspect') : deny('no policy allows GET /admin'));
      const tls = tlsConnect({ host: '127.0.0.1', port: boundPort(capture), servername: 'api.example.test', ca: egressCa.certPem });
      const next = answersOn(tls);
      tls.write('GET /admin HTTP/1.1\r\nHost: api.example.test\r\n\r\n');
      const r = await next();
      tls.destroy();
      expect(r.status).toBe(403);
      expect(JSON.parse(r.body)).toMatchObject({ error: 'denied', reason: 'no policy allows GET /admin' });
      expect(authorizer.requests.map((q) => [q.method, q.host, q.port, q.path, q.inspected])).toEqual([
        ['CONNECT', 'api.example.test', 443, '', undefined],
        ['GET', 'api.example.test', 443, '/admin', true],
      ]);
    } finally {
      await closeServer(capture);
    }
  });

  it('tls: originate: an absolute-form http:// request goes on as https:// (port 80 of http:// would be 443)', async () => {
    authorizer.decide = () => (allowWith('originate'));
    const socket = connect(proxyPort, '127.0.0.1');
    const next = answersOn(socket);
    socket.write(`GET http://api.example.test:${upstreamPort}/v1/doc HTTP/1.1\r\nHost: api.example.test:${upstreamPort}\r\n\r\n`);
    const r = await next();
    socket.destroy();
    expect(r.status).toBe(200);
    expect(r.body).toBe('tls upstream saw /v1/doc');
  });
});
