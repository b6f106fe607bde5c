import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFinished } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { createTestCa } from '../testing/certs.ts';
import type { Decision } from '../authz/authorizer.ts';
import { canonicalAddress } from './destination-check.ts';
import { allow, deny, FakeAuthorizer, loopbackDestinations, quietLogger, StaticSvidSource, svidFor, testMetrics } from '../testing/fakes.ts';
import { rawRequest } from '../testing/http-client.ts';
import { createCaptureServer } from './capture-server.ts';
import { McpBodyScope } from '@airlock/proto/identity/v1';
import { McpBodyNeeds } from '../mcp/mcp-body-scope.ts';
import { createOutboundServer } from './outbound-server.ts';
import { UpstreamPools } from './upstream-pools.ts';

const A = 'spiffe://airlock.test/ns/demo/sa/alice';

// What the test's "DNS" answers. Only 127.0.0.2 and 127.0.0.3 are allowed (egressAllowCidrs): the
// rest of loopback stands for the addresses a rebinding answer points at, with a listener there
// that counts every connection it gets (it must get none).
const ANSWERS: Record<string, string[]> = {
  'rebind.test': ['127.0.0.1'],
  'mapped.test': ['::ffff:127.0.0.1'],
  'mixed.test': ['127.0.0.2', '127.0.0.1'],
  'metadata.test': ['169.254.169.254'],
  // The first address has nothing listening: the next checked one is tried, as a client would.
  'ok.test': ['127.0.0.3', '127.0.0.2'],
};

/** Raw CONNECT (or anything) to a port: everything answered until the first blank line or close. */
function send(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    let text = '';
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (/\r\n\r\n[\s\S]*\}$|^HTTP\/1\.1 200[^]*\r\n\r\n/.test(text)) socket.destroy();
    });
    socket.on('close', () => resolve(text));
    socket.on('error', reject);
  });
}

describe('external destinations are dialled only at addresses checked', () => {
  const ca = createTestCa();
  const identity = new StaticSvidSource(svidFor(ca, A));
  const authorizer = new FakeAuthorizer(() => allow());
  const { metrics } = testMetrics();
  const meshPools = new UpstreamPools();
  let proxyPort = 0;
  const { destinations, external } = loopbackDestinations({
    allowCidrs: ['127.0.0.2/31'],
    ownPorts: () => [proxyPort],
    resolve: (host) => Promise.resolve(ANSWERS[host] ?? []),
  });
  const deps = { identity, authorizer, meshPools, external, destinations, metrics, logger: quietLogger() };
  let proxy: Server;
  let capture: ReturnType<typeof createCaptureServer>;
  let forbidden: TcpServer;
  let forbiddenPort: number;
  let reached = 0;
  let app: Server;

  beforeAll(async () => {
    proxy = createOutboundServer(deps);
    await listen(proxy, { host: '127.0.0.1', port: 0 });
    proxyPort = boundPort(proxy);
    capture = createCaptureServer(deps);
    await listen(capture, { host: '127.0.0.1', port: 0 });
    // The forbidden address, listening on every loopback port a test names: it counts what reaches it.
    forbidden = createTcpServer((s) => {
      reached += 1;
      s.destroy();
    });
    await listen(forbidden, { host: '127.0.0.1', port: 0 });
    forbiddenPort = boundPort(forbidden);
    // The allowed one (127.0.0.2), on the same port number, echoing the Host it was sent.
    app = createHttpServer((req, res) => res.end(`reached with Host ${req.headers.host ?? ''}`));
    await listen(app, { host: '127.0.0.2', port: forbiddenPort });
  });
  afterAll(async () => {
    await Promise.all([closeServer(proxy), closeServer(capture), closeServer(forbidden), closeServer(app)]);
    await external.destroy();
    await meshPools.close();
  });
  beforeEach(() => {
    reached = 0;
  });

  it.each([
    ['rebind.test', 'loopback', '127.0.0.1'],
    ['mapped.test', 'loopback', '127.0.0.1'],
    ['mixed.test', 'loopback', '127.0.0.1'],
    ['metadata.test', 'cloud-metadata', '169.254.169.254'],
    ['127.0.0.1', 'loopback', '127.0.0.1'],
    ['2130706433', 'loopback', '127.0.0.1'],
    ['0x7f.1', 'loopback', '127.0.0.1'],
    ['[::ffff:7f00:1]', 'loopback', '127.0.0.1'],
    // IPv6 that a NAT64 or 6to4 translator turns into 127.0.0.1
    ['[64:ff9b::7f00:1]', 'loopback', '64:ff9b::7f00:1'],
    ['[2002:7f00:1::]', 'loopback', '2002:7f00:1::'],
  ])('GET http://%s/ (absolute-form) → 403 naming %s, nothing dialled', async (host, rule, address) => {
    const res = await rawRequest(proxyPort, { target: `http://${host}:${forbiddenPort}/latest/meta-data/` });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'forbidden_destination', rule, address });
    expect(reached).toBe(0);
  });

  it('refuses the same on CONNECT, on an MCP tools/list, and on the capture port (HTTP by Host, TLS by SNI)', async () => {
    const tunnel = await send(proxyPort, `CONNECT rebind.test:${forbiddenPort} HTTP/1.1\r\nHost: rebind.test:${forbiddenPort}\r\n\r\n`);
    expect(tunnel).toMatch(/^HTTP\/1\.1 403 /);
    expect(JSON.parse(tunnel.slice(tunnel.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'forbidden_destination', rule: 'loopback' });

    const body = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}';
    const mcp = await rawRequest(proxyPort, { method: 'POST', target: `http://rebind.test:${forbiddenPort}/mcp`, headers: { 'content-type': 'application/json', 'content-length': String(body.length) }, body });
    expect(mcp.status).toBe(403);
    expect(JSON.parse(mcp.body)).toMatchObject({ error: 'forbidden_destination' });

    const captured = await rawRequest(boundPort(capture), { target: '/latest/meta-data/', headers: { host: `rebind.test:${forbiddenPort}` } });
    expect(captured.status).toBe(403);
    expect(JSON.parse(captured.body)).toMatchObject({ error: 'forbidden_destination', rule: 'loopback' });

    // Captured TLS is judged as CONNECT <SNI>:443: the refusal is a fatal access_denied alert.
    const tls = await new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: boundPort(capture), servername: 'metadata.test', rejectUnauthorized: false });
      socket.on('secureConnect', () => resolve('connected'));
      socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    expect(tls).toBe('ERR_SSL_TLSV1_ALERT_ACCESS_DENIED');
    expect(reached).toBe(0);
  });

  it("refuses the sidecar's own port on an allowed local address", async () => {
    const res = await rawRequest(proxyPort, { target: `http://127.0.0.2:${proxyPort}/` });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'forbidden_destination', rule: 'sidecar-port' });
  });

  it('reaches a name whose every address is allowed, at a checked address, with the name kept in Host', async () => {
    const res = await rawRequest(proxyPort, { target: `http://ok.test:${forbiddenPort}/x` });
    expect(res).toMatchObject({ status: 200, body: `reached with Host ok.test:${forbiddenPort}` });
    const tunnel = await send(proxyPort, `CONNECT ok.test:${forbiddenPort} HTTP/1.1\r\nHost: ok.test:${forbiddenPort}\r\n\r\n`);
    expect(tunnel).toMatch(/^HTTP\/1\.1 200 /);
    expect(reached).toBe(0);
  });

  it('answers an MCP call refused for where it resolves with a JSON-RPC error for its id, its body skipped by the scope or not', async () => {
    const skipping = new McpBodyNeeds();
    skipping.update(McpBodyScope.fromPartial({ policyVersion: 1 }));
    const lazy = createOutboundServer({ ...deps, mcpBody: skipping });
    await listen(lazy, { host: '127.0.0.1', port: 0 });
    onTestFinished(() => closeServer(lazy));
    const body = '{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"search"}}';
    for (const port of [proxyPort, boundPort(lazy)]) {
      const res = await rawRequest(port, { method: 'POST', target: `http://metadata.test:${forbiddenPort}/mcp`, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'content-length': String(body.length) }, body });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toMatchObject({ jsonrpc: '2.0', id: 41, error: { data: { error: 'forbidden_destination', rule: 'cloud-metadata' } } });
    }
    expect(reached).toBe(0);
  });
});

/**
 * The answer judged is the answer dialled: asked about a name, the control plane (here a fake that
 * plays it: a feed lists 127.0.0.77) answers addressesRequired; the sidecar resolves the name once,
 * sends the checked addresses, and dials only those. On every egress path: absolute-form HTTP,
 * CONNECT, and the capture port (HTTP by Host, TLS by SNI). A denied name is never resolved.
 */
describe('external names are judged on the addresses they resolve to, and dialled at those', () => {
  const ca = createTestCa();
  const identity = new StaticSvidSource(svidFor(ca, A));
  const listed = '127.0.0.77';
  const authorizer = new FakeAuthorizer((r): Decision => {
    if (r.host === 'denied.test') return deny();
    if (canonicalAddress(r.host) === undefined && r.destinationAddresses === undefined) return { allowed: false, decisionId: 'd-resolve', reason: 'resolve first', policy: '', policyVersion: 1, rule: '', addressesRequired: true };
    return r.destinationAddresses?.includes(listed) === true ? deny(`resolved to ${listed}, listed`) : allow();
  });
  const lookups: string[] = [];
  const { metrics } = testMetrics();
  const meshPools = new UpstreamPools();
  let flips = 0;
  const resolve = (host: string): Promise<readonly string[]> => {
    lookups.push(host);
    if (host === 'listed.test') return Promise.resolve([listed]);
    if (host === 'mcp.test') return Promise.resolve(['127.0.0.2']);
    if (host === 'many.test') return Promise.resolve(['127.0.0.2', ...Array.from({ length: 69 }, (_, i) => `127.0.1.${i + 1}`)]);
    // Rebinding: a clean answer first, the listed address to every later lookup.
    if (host === 'flip.test') return Promise.resolve(flips++ === 0 ? ['127.0.0.2'] : [listed]);
    return Promise.resolve([]);
  };
  const { destinations, external } = loopbackDestinations({ resolve });
  const deps = { identity, authorizer, meshPools, external, destinations, metrics, logger: quietLogger() };
  let proxy: Server;
  let capture: ReturnType<typeof createCaptureServer>;
  let listedServer: TcpServer;
  let app: Server;
  let port = 0;
  let reached = 0;

  beforeAll(async () => {
    proxy = createOutboundServer(deps);
    await listen(proxy, { host: '127.0.0.1', port: 0 });
    capture = createCaptureServer(deps);
    await listen(capture, { host: '127.0.0.1', port: 0 });
    listedServer = createTcpServer((s) => {
      reached += 1;
      s.destroy();
    });
    await listen(listedServer, { host: listed, port: 0 });
    port = boundPort(listedServer);
    app = createHttpServer((req, res) => {
      if (req.method !== 'POST') return void res.end(`reached with Host ${req.headers.host ?? ''}`);
      res.setHeader('content-type', 'application/json');
      res.end('{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search","inputSchema":{"type":"object"}}]}}');
    });
    await listen(app, { host: '127.0.0.2', port });
  });
  afterAll(async () => {
    await Promise.all([closeServer(proxy), closeServer(capture), closeServer(listedServer), closeServer(app)]);
    await external.destroy();
    await meshPools.close();
  });

  it('denies a name resolving to a listed address on every path, the address in the question, nothing dialled', async () => {
    const res = await rawRequest(boundPort(proxy), { target: `http://listed.test:${port}/` });
    expect(res.status).toBe(403);
    expect(authorizer.requests.at(-1)).toMatchObject({ host: 'listed.test', destinationAddresses: [listed] });
    const tunnel = await send(boundPort(proxy), `CONNECT listed.test:${port} HTTP/1.1\r\nHost: listed.test:${port}\r\n\r\n`);
    expect(tunnel).toMatch(/^HTTP\/1\.1 403 /);
    const captured = await rawRequest(boundPort(capture), { target: '/', headers: { host: `listed.test:${port}` } });
    expect(captured.status).toBe(403);
    const tls = await new Promise<string>((done) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: boundPort(capture), servername: 'listed.test', rejectUnauthorized: false });
      socket.on('secureConnect', () => done('connected'));
      socket.on('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    });
    expect(tls).toBe('ERR_SSL_TLSV1_ALERT_ACCESS_DENIED');
    const asked = authorizer.requests.slice(-8).map((r) => [r.method, r.destinationAddresses]);
    expect(asked).toEqual(['GET', 'CONNECT', 'GET', 'CONNECT'].flatMap((m) => [[m, undefined], [m, [listed]]]));
    expect(reached).toBe(0);
  });

  it('judges and dials the first 64 addresses of a longer answer (what the control plane accepts), not a refusal', async () => {
    const res = await rawRequest(boundPort(proxy), { target: `http://many.test:${port}/x` });
    expect(res).toMatchObject({ status: 200, body: `reached with Host many.test:${port}` });
    const asked = authorizer.requests.at(-1)?.destinationAddresses;
    expect(asked).toHaveLength(64);
    expect(asked?.[0]).toBe('127.0.0.2');
  });

  it('dials the answer it judged, never a second lookup (a rebinding answer after the ask reaches nothing)', async () => {
    const res = await rawRequest(boundPort(proxy), { target: `http://flip.test:${port}/x` });
    expect(res).toMatchObject({ status: 200, body: `reached with Host flip.test:${port}` });
    expect(flips).toBe(1);
    // The next call is judged on the listed answer: denied, though a connection to the clean one is pooled.
    expect((await rawRequest(boundPort(proxy), { target: `http://flip.test:${port}/x` })).status).toBe(403);
    expect(reached).toBe(0);
  });

  it('filters a tools/list answer on the question as decided, resolved addresses included', async () => {
    const decide = authorizer.decide;
    onTestFinished(() => {
      authorizer.decide = decide;
    });
    authorizer.decide = (r) => (canonicalAddress(r.host) === undefined && r.destinationAddresses === undefined ? { allowed: false, decisionId: 'd-resolve', reason: 'resolve first', policy: '', policyVersion: 1, rule: '', addressesRequired: true } : { ...allow(), allowedTools: r.listedTools ?? [] });
    const body = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}';
    const res = await rawRequest(boundPort(proxy), { method: 'POST', target: `http://mcp.test:${port}/mcp`, headers: { 'content-type': 'application/json', 'content-length': String(body.length) }, body });
    expect(res.status).toBe(200);
    expect(res.body).toContain('"search"');
    expect(authorizer.requests.at(-1)).toMatchObject({ listedTools: ['search'], destinationAddresses: ['127.0.0.2'] });
  });

  it('never resolves a name the policies deny (no DNS query carries it), nor an IP literal', async () => {
    lookups.length = 0;
    expect((await rawRequest(boundPort(proxy), { target: `http://denied.test:${port}/` })).status).toBe(403);
    expect(await send(boundPort(proxy), `CONNECT denied.test:${port} HTTP/1.1\r\nHost: denied.test:${port}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 403 /);
    const asked = authorizer.requests.length;
    expect((await rawRequest(boundPort(proxy), { target: `http://127.0.0.2:${port}/` })).status).toBe(200);
    expect(authorizer.requests.length - asked).toBe(1);
    expect(lookups).toEqual([]);
  });
});
