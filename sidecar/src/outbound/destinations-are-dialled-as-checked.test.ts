import { createServer as createHttpServer, type Server } from 'node:http';
import { connect, createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { createTestCa } from '../testing/certs.ts';
import { allow, FakeAuthorizer, loopbackDestinations, quietLogger, StaticSvidSource, svidFor, testMetrics } from '../testing/fakes.ts';
import { rawRequest } from '../testing/http-client.ts';
import { createCaptureServer } from './capture-server.ts';
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
});
