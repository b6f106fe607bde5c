// Threat model, "slow or endless responses": a destination that never accepts, never finishes its
// TLS handshake, never sends headers, or stops mid-body holds an agent's call only for the sidecar's
// upstreamConnectTimeout, upstreamHeadersTimeout and upstreamBodyTimeout (set small here), and the
// agent is told which with a 504 JSON (or, once the answer has begun, a cut connection); an answer
// that keeps trickling is relayed whole. Every destination is on loopback.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { startEchoApp } from '../cli/src/demo/echo-app.ts';
import { createTestCa } from '../sidecar/src/testing/certs.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';

/**
 * A port on which SYNs go unanswered: a listener with a backlog of 0 that never accepts, its one
 * queue slot taken by `filler`. Further connections hang in SYN-SENT, as to a blackholed host.
 * (Python: Node accepts every connection itself.)
 */
async function blackhole(): Promise<{ port: number; close(): void }> {
  const py: ChildProcess = spawn('python3', ['-c', "import socket,sys\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.read()"], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => py.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  const filler = connect(port, '127.0.0.1');
  await new Promise((r) => filler.once('connect', r));
  return {
    port,
    close: () => {
      filler.destroy();
      py.kill();
    },
  };
}

interface Answer {
  readonly status: number;
  readonly body: string;
  /** Set when the connection was cut before the body ended. */
  readonly cut?: string;
}

/** GET `target` through the sidecar's outbound proxy; a body cut short resolves with `cut`. */
function viaProxy(port: number, target: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: target, headers: { host: new URL(target).host }, agent: false }, (res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (err) => resolve({ status: res.statusCode ?? 0, body, cut: err.message }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Resolves once `socket` closes. */
const closedSocket = (socket: Socket): Promise<void> => new Promise((r) => (socket.destroyed ? r() : socket.once('close', () => r())));

describe('destinations that are slow or silent', () => {
  let mesh: Mesh;
  let hole: { port: number; close(): void };
  let silentTls: Server;
  let web: HttpServer;
  let webPort = 0;
  let peerApp: HttpServer;
  /** An HTTPS host (its certificate of a CA the sidecars trust) that takes requests and never answers. */
  let silentHttps: Server;
  const dir = mkdtempSync(join(tmpdir(), 'airlock-slow-destinations-'));
  /** Server-side sockets of `web`, by path of the request they carried. */
  const sockets = new Map<string, Socket>();

  beforeAll(async () => {
    hole = await blackhole();
    // Accepts TCP and reads the ClientHello, never answers it.
    silentTls = createServer((s) => s.on('data', () => undefined));
    await listen(silentTls, { host: '127.0.0.1', port: 0 });
    const upstreamCa = createTestCa('Upstream Test CA');
    writeFileSync(join(dir, 'upstream-ca.pem'), upstreamCa.certPem);
    const leaf = upstreamCa.issue({ ips: ['127.0.0.1'] });
    silentHttps = createHttpsServer({ key: leaf.keyPem, cert: leaf.certPem }, () => undefined);
    await listen(silentHttps, { host: '127.0.0.1', port: 0 });
    web = createHttpServer((req, res) => {
      sockets.set(req.url ?? '', req.socket);
      if (req.url === '/no-headers') return; // never answers
      if (req.url === '/stops-mid-body') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first part;');
        return; // never ends
      }
      if (req.url === '/trickles') {
        // A streamed answer: a chunk every 300 ms for 3 s, three times upstreamBodyTimeout in all.
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        let n = 0;
        const timer = setInterval(() => {
          res.write(`data: ${n}\n\n`);
          if (++n === 10) {
            clearInterval(timer);
            res.end();
          }
        }, 300);
        return;
      }
      res.end('ok');
    });
    await listen(web, { host: '127.0.0.1', port: 0 });
    webPort = boundPort(web);
    const policy = `${policyYaml('agents', ['planner', 'researcher'], [{ name: 'p', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] }])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: loopback-hosts }
spec: { from: { segments: [planner] }, to: { hosts: ["127.0.0.1"], ports: [${hole.port}, ${webPort}] }, action: allow }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: silent-tls }
spec: { from: { segments: [planner] }, to: { hosts: ["127.0.0.1"], ports: [${boundPort(silentTls)}], tls: originate }, action: allow }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: inspected }
spec: { from: { segments: [planner] }, to: { hosts: ["127.0.0.1"], ports: [${boundPort(silentHttps)}], tls: inspect }, action: allow }
`;
    mesh = await startMesh({
      agents: ['planner', 'researcher'],
      policy,
      sidecarArgs: ['--egress-allow-cidrs', '127.0.0.0/8', '--egress-trust-bundle-file', join(dir, 'upstream-ca.pem'), '--upstream-connect-timeout', '1s', '--upstream-headers-timeout', '1s', '--upstream-body-timeout', '1s'],
      // The researcher's app takes every request and never answers it.
      startApp: async (agent, onRequest) => {
        if (agent !== 'researcher') return startEchoApp(agent, 0, onRequest);
        peerApp = createHttpServer(() => undefined);
        await listen(peerApp, { host: '127.0.0.1', port: 0 });
        return peerApp;
      },
    });
  });
  afterAll(async () => {
    await mesh.close();
    hole.close();
    await Promise.all([closeServer(silentTls), closeServer(web), closeServer(silentHttps)]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers 504 naming upstreamConnectTimeout when the host never answers the SYN (plain HTTP and a CONNECT tunnel)', { timeout: 30_000 }, async () => {
    const got = await viaProxy(mesh.agent('planner').outboundPort, `http://127.0.0.1:${hole.port}/x`);
    expect(got.status).toBe(504);
    expect(JSON.parse(got.body)).toMatchObject({ error: 'upstream_timeout', reason: expect.stringContaining('no connection within 1000 ms (upstreamConnectTimeout)') as unknown });
    // The blind tunnel dials the same way.
    const socket = connect(mesh.agent('planner').outboundPort, '127.0.0.1');
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.write(`CONNECT 127.0.0.1:${hole.port} HTTP/1.1\r\nHost: 127.0.0.1:${hole.port}\r\n\r\n`);
    await closedSocket(socket);
    expect(text).toMatch(/^HTTP\/1\.1 504 /);
    expect(text).toContain('no connection within 1000 ms (upstreamConnectTimeout)');
  });

  it('answers 504 naming upstreamConnectTimeout when the host accepts TCP but never answers the ClientHello (tls: originate)', { timeout: 30_000 }, async () => {
    const got = await viaProxy(mesh.agent('planner').outboundPort, `http://127.0.0.1:${boundPort(silentTls)}/x`);
    expect(got.status).toBe(504);
    expect(JSON.parse(got.body)).toMatchObject({ error: 'upstream_timeout', reason: expect.stringContaining('no TLS handshake within 1000 ms (upstreamConnectTimeout)') as unknown });
  });

  it('answers 504 naming upstreamHeadersTimeout when the host never sends headers, and frees the connection', { timeout: 30_000 }, async () => {
    const got = await viaProxy(mesh.agent('planner').outboundPort, `http://127.0.0.1:${webPort}/no-headers`);
    expect(got.status).toBe(504);
    expect(JSON.parse(got.body)).toMatchObject({ error: 'upstream_timeout', reason: expect.stringContaining('upstreamHeadersTimeout') as unknown });
    const upstream = sockets.get('/no-headers');
    expect(upstream).toBeDefined();
    if (upstream !== undefined) await closedSocket(upstream);
  });

  it('cuts the call when the host stops mid-body for upstreamBodyTimeout, and frees the connection', { timeout: 30_000 }, async () => {
    const got = await viaProxy(mesh.agent('planner').outboundPort, `http://127.0.0.1:${webPort}/stops-mid-body`);
    expect(got.status).toBe(200);
    expect(got.body).toBe('first part;');
    expect(got.cut).toBeDefined();
    const upstream = sockets.get('/stops-mid-body');
    expect(upstream).toBeDefined();
    if (upstream !== undefined) await closedSocket(upstream);
  });

  it('relays an answer that trickles for longer than upstreamBodyTimeout in all, as long as it keeps sending (streaming)', { timeout: 30_000 }, async () => {
    const got = await viaProxy(mesh.agent('planner').outboundPort, `http://127.0.0.1:${webPort}/trickles`);
    expect(got).toEqual({ status: 200, body: Array.from({ length: 10 }, (_, n) => `data: ${n}\n\n`).join('') });
  });

  it('answers 504 naming upstreamHeadersTimeout inside an inspected tunnel (tls: inspect) when the host never sends headers', { timeout: 30_000 }, async () => {
    const authority = `127.0.0.1:${boundPort(silentHttps)}`;
    const tunnel = connect(mesh.agent('planner').outboundPort, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      tunnel.once('connect', () => tunnel.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`));
      tunnel.once('data', (d: Buffer) => (d.toString('latin1').startsWith('HTTP/1.1 200') ? resolve() : reject(new Error(d.toString('latin1')))));
    });
    // The agent's trust in the egress CA is not what is tested here: its certificate is not checked.
    const tls = tlsConnect({ socket: tunnel, rejectUnauthorized: false });
    await new Promise((r) => tls.once('secureConnect', r));
    let text = '';
    tls.on('data', (d: Buffer) => (text += d.toString('latin1')));
    tls.write(`GET /no-headers HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`);
    await closedSocket(tls);
    expect(text).toMatch(/^HTTP\/1\.1 504 /);
    expect(text).toContain('upstream_timeout');
    expect(text).toContain('upstreamHeadersTimeout');
  });

  it('answers 504 naming upstreamHeadersTimeout when a peer sidecar (its app) never answers', { timeout: 30_000 }, async () => {
    const got = await viaProxy(mesh.agent('planner').outboundPort, 'http://researcher.agents/v1/silent');
    expect(got.status).toBe(504);
    expect(JSON.parse(got.body)).toMatchObject({ error: 'upstream_timeout', reason: expect.stringContaining('upstreamHeadersTimeout') as unknown });
  });
});
