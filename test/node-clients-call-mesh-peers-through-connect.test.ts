import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ProxyAgent, fetch as undiciFetch } from 'undici7';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { adminPost } from '../cli/src/admin-client.ts';
import { startEchoApp, type EchoBody } from '../cli/src/demo/echo-app.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { rawHttp } from './support/raw-http.ts';

/**
 * Node agents as they really call out: Node 24's own fetch under NODE_USE_ENV_PROXY=1 and undici
 * 7's ProxyAgent with its defaults send `http://researcher.agents/…` as `CONNECT researcher.agents:80`
 * and plain HTTP inside. The sidecar serves that tunnel as HTTP: each request authorized and sent
 * to the peer over mTLS; a denied one is a 403 JSON the caller reads.
 */
const POLICY = `${policyYaml('agents', ['planner', 'researcher', 'tools'], [{ name: 'planner-search', from: 'planner', to: 'researcher', methods: ['GET', 'POST'], paths: ['/v1/*'] }])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: planner-mcp }
spec:
  from: { segments: [planner] }
  to: { segments: [tools] }
  rules: [ { methods: [POST], paths: [/mcp], mcp: { tools: ["search_*"] } } ]
  action: allow
`;

/** A real MCP server (the SDK's, stateless streamable HTTP) with a tool planner may call and one it may not. */
async function startSdkMcpApp(agent: string, onRequest: (body: EchoBody) => void): Promise<Server> {
  const server = createServer((req, res) => {
    onRequest({ agent, method: req.method ?? '', path: req.url ?? '', headers: req.headers });
    const mcp = new McpServer({ name: 'tools', version: '1.0.0' });
    mcp.registerTool('search_web', { description: 'searches the web' }, () => ({ content: [{ type: 'text', text: 'results from the tools app' }] }));
    mcp.registerTool('delete_all', { description: 'deletes everything' }, () => ({ content: [{ type: 'text', text: 'deleted' }] }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => void transport.close().then(() => mcp.close()));
    void mcp.connect(transport).then(() => transport.handleRequest(req, res));
  });
  await listen(server, { host: '127.0.0.1', port: 0 });
  return server;
}

/** What a child `node` (the pinned Node 24) printed after calling `urls` with its own fetch, HTTP_PROXY set. */
async function nodeFetch(proxyPort: number, urls: readonly string[]): Promise<{ status: number; body: string }[]> {
  const script = `const out = []; for (const u of JSON.parse(process.argv[1])) { const r = await fetch(u); out.push({ status: r.status, body: await r.text() }); } console.log(JSON.stringify(out));`;
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, NODE_USE_ENV_PROXY: '1', HTTP_PROXY: `http://127.0.0.1:${proxyPort}` };
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(urls)], { env, timeout: 30_000 });
  return JSON.parse(stdout) as { status: number; body: string }[];
}

describe('Node agents call mesh peers through CONNECT as Node sends it', () => {
  let mesh: Mesh;
  let agent: ProxyAgent;

  beforeAll(async () => {
    mesh = await startMesh({
      agents: ['planner', 'researcher', 'tools'],
      policy: POLICY,
      startApp: (name, onRequest) => (name === 'tools' ? startSdkMcpApp(name, onRequest) : startEchoApp(name, 0, onRequest)),
    });
    agent = new ProxyAgent(`http://127.0.0.1:${mesh.agent('planner').outboundPort}`);
  });
  afterAll(async () => {
    await agent.close();
    await mesh.close();
  });

  it('Node 24 fetch with NODE_USE_ENV_PROXY=1 reaches the peer, and reads the 403 JSON of a denied path', async () => {
    const before = mesh.agent('researcher').received.length;
    const [allowed, denied, again] = await nodeFetch(mesh.agent('planner').outboundPort, ['http://researcher.agents/v1/search?q=cats', 'http://researcher.agents/admin', 'http://researcher.agents/v1/again']);
    expect(allowed?.status).toBe(200);
    expect(JSON.parse(allowed?.body ?? '')).toMatchObject({ agent: 'researcher', path: '/v1/search?q=cats' });
    expect(denied?.status).toBe(403);
    expect(JSON.parse(denied?.body ?? '')).toMatchObject({ error: 'denied', reason: expect.stringMatching(/no policy allows GET \/admin/) as unknown });
    expect(again?.status).toBe(200);
    // The peer saw the allowed calls only, from planner's verified identity.
    const received = mesh.agent('researcher').received.slice(before);
    expect(received.map((r) => r.path)).toEqual(['/v1/search?q=cats', '/v1/again']);
    expect(received[0]?.headers['x-forwarded-client-cert']).toContain(mesh.agent('planner').identity);
    expect(received[0]?.headers.host).toBe('researcher.agents'); // as for http://researcher.agents/ in absolute form
  });

  it("undici 7's default ProxyAgent reaches the peer, and reads the 403 JSON of a denied path", async () => {
    const ok = await undiciFetch('http://researcher.agents/v1/items', { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' }, dispatcher: agent });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ agent: 'researcher', method: 'POST', path: '/v1/items' });
    const denied = await undiciFetch('http://researcher.agents/private', { dispatcher: agent });
    expect(denied.status).toBe(403);
    expect(await denied.json()).toMatchObject({ error: 'denied', reason: expect.stringMatching(/no policy allows GET \/private/) as unknown });
  });

  it.each([
    ['a Host naming another peer', 'GET /v1/x HTTP/1.1\r\nHost: tools.agents\r\n', /Host header \(tools\.agents\) names another authority than the URL \(researcher\.agents\)/],
    ['a Host naming another port', 'GET /v1/x HTTP/1.1\r\nHost: researcher.agents:8080\r\n', /names another authority/],
    ['an absolute-form URL naming another peer', 'GET http://tools.agents/v1/x HTTP/1.1\r\nHost: tools.agents\r\n', /names tools\.agents, but its tunnel was opened to researcher\.agents;/],
  ])('refuses in a tunnel to a peer %s (400), and nothing reaches any app', async (_name, request, reason) => {
    const before = [mesh.agent('researcher').received.length, mesh.agent('tools').received.length];
    const raw = await rawHttp(mesh.agent('planner').outboundPort, `CONNECT researcher.agents:80 HTTP/1.1\r\nHost: researcher.agents:80\r\n\r\n${request}Connection: close\r\n\r\n`);
    const answers = `${raw.head}\r\n\r\n${raw.body}`.split(/(?=HTTP\/1\.1 \d{3} )/);
    expect(answers[0]).toMatch(/^HTTP\/1\.1 200 /);
    expect(answers[1]).toMatch(/^HTTP\/1\.1 400 /);
    expect(answers[1]).toMatch(reason);
    expect([mesh.agent('researcher').received.length, mesh.agent('tools').received.length]).toEqual(before);
  });

  it('the MCP SDK client, its fetch through that ProxyAgent, calls an allowed tool and is refused a denied one', async () => {
    const transport = new StreamableHTTPClientTransport(new URL('http://tools.agents/mcp'), {
      // Node's fetch with undici 7's ProxyAgent as its dispatcher: how an SDK user routes it through a proxy.
      fetch: (url, init) => {
        const withProxy = { ...init, dispatcher: agent };
        return fetch(url, withProxy);
      },
    });
    const client = new Client({ name: 'planner', version: '1.0.0' });
    await client.connect(transport);
    try {
      const result = await client.callTool({ name: 'search_web', arguments: {} });
      expect(result.content).toEqual([{ type: 'text', text: 'results from the tools app' }]);
      // A JSON-RPC error for the call: the SDK's McpError carries the sidecar's reason and, in data, its 403 JSON.
      await expect(client.callTool({ name: 'delete_all', arguments: {} })).rejects.toMatchObject({ code: -32050, message: expect.stringMatching(/no policy allows POST \/mcp \(MCP tools\/call delete_all\)/) as unknown, data: { error: 'denied' } });
      // tools/list answers only what planner may call.
      expect((await client.listTools()).tools.map((t) => t.name)).toEqual(['search_web']);
    } finally {
      await client.close();
    }
  });
});

/** Answers read one by one from one connection (Content-Length framed, as the echo app and the sidecar's JSON errors are). */
function answersOn(socket: Socket): () => Promise<{ status: number; body: string }> {
  let buffered = Buffer.alloc(0);
  const waiting: (() => void)[] = [];
  socket.on('data', (c: Buffer) => {
    buffered = Buffer.concat([buffered, c]);
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
          return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), body };
        }
      }
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
  };
}

describe('a tunnel served as HTTP: external hosts on plainHttpPorts, and each request decided as it comes', () => {
  let mesh: Mesh;
  let external: Server;
  let externalPort: number;
  const externalReceived: EchoBody[] = [];

  beforeAll(async () => {
    external = await startEchoApp('external', 0, (b) => externalReceived.push(b));
    externalPort = boundPort(external);
    const policy = `${policyYaml('agents', ['planner', 'researcher'], [{ name: 'planner-search', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] }])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: external-api }
spec:
  from: { segments: [planner] }
  to: { hosts: ["127.0.0.1"], ports: [${externalPort}] }
  rules: [ { methods: [GET], paths: [/v1/*] } ]
  action: allow
`;
    mesh = await startMesh({ agents: ['planner', 'researcher'], policy, sidecarArgs: ['--plain-http-ports', `80,${externalPort}`, '--egress-allow-cidrs', '127.0.0.0/8'] });
  });
  afterAll(async () => {
    await mesh.close();
    await closeServer(external);
  });

  it('Node 24 fetch reaches an external host on a plain-HTTP port directly, and reads the 403 JSON of a denied path', async () => {
    const base = `http://127.0.0.1:${externalPort}`;
    const [allowed, denied] = await nodeFetch(mesh.agent('planner').outboundPort, [`${base}/v1/weather`, `${base}/admin`]);
    expect(allowed?.status).toBe(200);
    expect(JSON.parse(allowed?.body ?? '')).toMatchObject({ agent: 'external', path: '/v1/weather' });
    expect(denied?.status).toBe(403);
    expect(JSON.parse(denied?.body ?? '')).toMatchObject({ error: 'denied' });
    expect(externalReceived.map((r) => r.path)).toEqual(['/v1/weather']);
  });

  it('a policy change between two requests on one tunnel applies to the second', async () => {
    const socket = connect(mesh.agent('planner').outboundPort, '127.0.0.1');
    try {
      const next = answersOn(socket);
      socket.write('CONNECT researcher.agents:80 HTTP/1.1\r\nHost: researcher.agents:80\r\n\r\n');
      expect((await next()).status).toBe(200);
      const get = (path: string): void => void socket.write(`GET ${path} HTTP/1.1\r\nHost: researcher.agents\r\n\r\n`);
      get('/v1/a');
      expect((await next()).status).toBe(200);
      const narrowed = policyYaml('agents', [], [{ name: 'planner-search', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v2/*'] }]);
      expect(await adminPost(mesh.creds, '/v1/policy/apply', { yaml: narrowed })).toMatchObject({ changed: true });
      get('/v1/a');
      const denied = await next();
      expect(denied.status).toBe(403);
      expect(JSON.parse(denied.body)).toMatchObject({ error: 'denied' });
      get('/v2/b');
      expect((await next()).status).toBe(200);
      expect(mesh.agent('researcher').received.map((r) => r.path)).toEqual(['/v1/a', '/v2/b']);
    } finally {
      socket.destroy();
    }
  });
});
