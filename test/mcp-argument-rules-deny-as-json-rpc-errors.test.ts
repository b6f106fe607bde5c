import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { Agent, ProxyAgent } from 'undici7';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { openTicket, TICKET_HEADER } from '@airlock/common/ticket';
import { AuthorizationServiceClient, AuthorizeRequest, Direction } from '@airlock/proto/authorization/v1';
import { credentials, Metadata } from '@grpc/grpc-js';
import { CONTROL_PLANE_CHANNEL_OPTIONS } from '../sidecar/src/controlplane/credentials.ts';
import { adminPost } from '../cli/src/admin-client.ts';
import { caFromPem } from '../sidecar/src/testing/certs.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { rawHttp } from './support/raw-http.ts';
import { refusal, sdkClient } from './support/mcp-sdk-client.ts';
import { recorder, startSdkMcpApp } from './support/mcp-sdk-app.ts';

// planner may call `transfer` for amounts 0..100 in USD, and `read_file` under /data/ only; the
// memo of a transfer is loggable, its amount is not. `wipe` is denied by a deny policy.
const POLICY = `${policyYaml('agents', ['planner', 'tools'], [])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: planner-tools }
spec:
  from: { segments: [planner] }
  to: { segments: [tools] }
  rules:
    - methods: [POST]
      paths: [/mcp]
      mcp:
        tools: [transfer]
        arguments:
          - { path: amount, min: 0, max: 100 }
          - { path: currency, equals: USD }
          - { path: memo, maxLength: 40, loggable: true }
    - { methods: [POST], paths: [/mcp], mcp: { tools: [read_file], arguments: [ { path: path, filePath: ["/data/*"] } ] } }
    - { methods: [POST], paths: [/mcp], mcp: { tools: [wipe] } }
    - { methods: [GET], paths: [/status] }
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: no-wipe }
spec:
  from: { segments: [planner] }
  to: { segments: [tools] }
  rules: [ { paths: [/mcp], mcp: { tools: [wipe] } } ]
  action: deny
`;

/** The SDK's MCP server (stateless streamable HTTP): every call that reaches it is recorded. */
/** The tools of the MCP app, each recording its call in `called`. */
function paymentTools(called: string[]): (mcp: McpServer) => void {
  const record = recorder(called);
  return (mcp) => {
    mcp.registerTool('transfer', { description: 'moves money', inputSchema: { amount: z.number(), currency: z.string(), memo: z.string() } }, (a) => record(`transferred ${a.amount} ${a.currency}`));
    mcp.registerTool('read_file', { description: 'reads a file', inputSchema: { path: z.string() } }, (a) => record(`read ${a.path}`));
    mcp.registerTool('wipe', { description: 'wipes' }, () => record('wiped'));
    mcp.registerTool('shell', { description: 'runs a command' }, () => record('ran'));
  };
}

interface DenialData {
  error: string;
  reason: string;
  policy: string;
  policyVersion: number;
  rule: string;
  decisionId: string;
}

describe('MCP argument rules, denials as JSON-RPC errors the SDK client surfaces', () => {
  let mesh: Mesh;
  const called: string[] = [];
  let proxy: ProxyAgent;
  let client: Client;

  beforeAll(async () => {
    mesh = await startMesh({ agents: ['planner', 'tools'], policy: POLICY, startApp: (name, onRequest) => startSdkMcpApp(name, onRequest, paymentTools(called)) });
    proxy = new ProxyAgent(`http://127.0.0.1:${mesh.agent('planner').outboundPort}`);
    client = await sdkClient('http://tools.agents/mcp', proxy);
  });
  afterAll(async () => {
    await client.close();
    await proxy.close();
    await mesh.close();
  });

  const text = (r: unknown): string => ((r as { content: { text: string }[] }).content[0]?.text ?? '');

  it('admits a call judged on its arguments on its ticket, and only with those very arguments', async () => {
    const tools = mesh.agent('tools');
    const admissions = async (): Promise<number> => {
      const page = await (await fetch(`http://127.0.0.1:${tools.adminPort}/metrics`)).text();
      return [...page.matchAll(/^airlock_sidecar_ticket_admissions_total(?:\{[^}]*\})? (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    };
    // The ingress holds its ticket keys once it holds an SVID.
    await expect.poll(async () => {
      const before = await admissions();
      await client.callTool({ name: 'transfer', arguments: { amount: 7, currency: 'USD', memo: 'ticketed' } });
      return (await admissions()) - before;
    }, { timeout: 10_000 }).toBe(1);

    // A genuine ticket for 7 USD (planner's egress question), sent straight to the ingress.
    const caPem = readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8');
    const planner = caFromPem(caPem, readFileSync(join(mesh.dataDir, 'ca.key'), 'utf8')).issue({ uris: [mesh.agent('planner').identity] });
    const asPlanner = new AuthorizationServiceClient(`127.0.0.1:${mesh.grpcPort}`, credentials.createSsl(Buffer.from(caPem), Buffer.from(planner.keyPem), Buffer.from(planner.certPem), { checkServerIdentity: () => undefined }), CONTROL_PLANE_CHANNEL_OPTIONS);
    const seven = { amount: 7, currency: 'USD', memo: 'direct' };
    const ticketFor = (args: unknown): Promise<string> => {
      const request = AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: mesh.agent('planner').identity, destinationHost: 'tools.agents', destinationPort: 80, method: 'POST', path: '/mcp', mcpMethod: 'tools/call', mcpTool: 'transfer', mcpArguments: JSON.stringify(args) });
      return new Promise<string>((resolve, reject) => asPlanner.authorize(request, new Metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err === null ? resolve(res.ticket) : reject(err))));
    };
    const direct = (ticket: string, args: unknown, id: number) => {
      const body = JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'transfer', arguments: args } });
      return rawHttp(tools.inboundPort, `POST /mcp HTTP/1.1\r\nHost: tools.agents\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n${TICKET_HEADER}: ${ticket}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`, {
        tls: { ca: caPem, cert: planner.certPem, key: planner.keyPem, checkServerIdentity: () => undefined },
      });
    };
    try {
      const genuine = await ticketFor(seven);
      expect(openTicket(genuine)?.claims.mcpArgumentsDigest).toMatch(/^[0-9a-f]{64}$/);
      // With its own arguments: admitted on the ticket.
      let before = await admissions();
      expect((await direct(genuine, seven, 51)).body).toContain('transferred 7 USD');
      expect(await admissions()).toBe(before + 1);
      // Another ticket for 7 USD, sent with 7000: not admitted on it; decided, and denied.
      const called7000 = called.filter((c) => c.includes('7000')).length;
      before = await admissions();
      const refused = JSON.parse((await direct(await ticketFor(seven), { ...seven, amount: 7000 }, 52)).body) as { id: number; error?: { code: number } };
      expect(refused).toMatchObject({ id: 52, error: { code: -32050 } });
      expect(await admissions()).toBe(before);
      expect(called.filter((c) => c.includes('7000')).length).toBe(called7000);
    } finally {
      asPlanner.close();
    }
  });

  it('allows transfer of 100 USD, refuses 101 with an McpError naming the argument and the decision, and the session goes on', async () => {
    expect(text(await client.callTool({ name: 'transfer', arguments: { amount: 100, currency: 'USD', memo: 'rent' } }))).toBe('transferred 100 USD');
    const before = called.length;
    const err = await refusal(client.callTool({ name: 'transfer', arguments: { amount: 101, currency: 'USD', memo: 'rent' } }));
    expect(err.code).toBe(-32050);
    expect(err.message).toMatch(/no policy allows POST \/mcp \(MCP tools\/call transfer\) .*: argument "amount" is above the maximum 100/);
    expect(err.message).not.toContain('101');
    const data = err.data as DenialData;
    expect(data).toMatchObject({ error: 'denied', policy: '', policyVersion: 1, rule: '' });
    expect(data.decisionId).toMatch(/^[0-9a-f-]{36}$/);
    // Other spellings of too much: a string, a float over the bound, a huge number, another currency.
    const base: Record<string, unknown> = { currency: 'USD', memo: 'm' };
    for (const args of [{ amount: '50' }, { amount: 100.5 }, { amount: 1e300 }, { amount: 5, currency: 'EUR' }, { amount: 5, memo: 'x'.repeat(41) }]) {
      expect((await refusal(client.callTool({ name: 'transfer', arguments: { ...base, ...args } }))).code).toBe(-32050);
    }
    expect(called.length).toBe(before);
    // The same session still works.
    expect(text(await client.callTool({ name: 'transfer', arguments: { amount: 5, currency: 'USD', memo: 'again' } }))).toBe('transferred 5 USD');
    // The audit line names the rule's argument paths; the amount is redacted, the loggable memo is not.
    const audit = await auditLine(data.decisionId);
    expect(audit).toMatchObject({ verdict: 'deny', mcp: { tool: 'transfer', arguments: [{ path: 'amount', value: '[redacted]' }] } });
    // Nowhere as a value (hashes and ids are hex and may hold the digits "101").
    expect(JSON.stringify(audit)).not.toMatch(/[:[,]101[,\]}]|"101"/);
  });

  it('read_file only under /data/: path tricks are refused, not normalized', async () => {
    expect(text(await client.callTool({ name: 'read_file', arguments: { path: '/data/reports/q1.txt' } }))).toBe('read /data/reports/q1.txt');
    const before = called.length;
    for (const path of ['/data/../etc/passwd', '/data/./../etc/passwd', '/data//etc', '/data/%2e%2e/etc/passwd', '/data\\..\\etc', '/etc/passwd', 'data/x', '/database/x']) {
      const err = await refusal(client.callTool({ name: 'read_file', arguments: { path } }));
      expect(err.code, path).toBe(-32050);
    }
    expect((await refusal(client.callTool({ name: 'read_file', arguments: { path: '/data/../etc/passwd' } }))).message).toMatch(/argument "path" is not a file path in normal form \(a "\.\." segment\)/);
    expect(called.length).toBe(before);
  });

  it('a deny policy names itself in error.data; tools/list lists the tools some call could be allowed', async () => {
    const err = await refusal(client.callTool({ name: 'wipe', arguments: {} }));
    expect(err.data).toMatchObject({ error: 'denied', policy: 'no-wipe', rule: 'rules[0]' });
    expect((await client.listTools()).tools.map((t) => t.name)).toEqual(['transfer', 'read_file']);
  });

  it('a duplicate amount key, or arguments over the bounds, never pass an argument rule', async () => {
    const post = (body: string) => mesh.call('planner', 'POST', 'http://tools.agents/mcp', { headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body });
    const dup = await post('{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"transfer","arguments":{"amount":1,"currency":"USD","memo":"m","amount":1000}}}');
    // An unreadable body has no trustworthy id: the plain 403 JSON.
    expect(dup.status).toBe(403);
    expect(dup.json<{ reason: string }>().reason).toMatch(/"amount" twice/);
    let deep: unknown = 1;
    for (let i = 0; i < 12; i++) deep = { d: deep };
    const over = await post(JSON.stringify({ jsonrpc: '2.0', id: 'x', method: 'tools/call', params: { name: 'transfer', arguments: { amount: 1, currency: 'USD', memo: 'm', extra: deep } } }));
    expect(over.status).toBe(200);
    expect(over.json()).toMatchObject({ jsonrpc: '2.0', id: 'x', error: { code: -32050, message: expect.stringMatching(/the tool arguments cannot be judged: the tool arguments are nested deeper than 8/) as unknown } });
  });

  it('plain HTTP calls and MCP notifications keep the 403 JSON; a client accepting only event streams gets the error as an event', async () => {
    const get = await mesh.call('planner', 'GET', 'http://tools.agents/admin');
    expect(get.status).toBe(403);
    expect(get.json()).toMatchObject({ error: 'denied' });
    const notification = await mesh.call('planner', 'POST', 'http://tools.agents/other', { headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{"jsonrpc":"2.0","method":"notifications/initialized"}' });
    expect(notification.status).toBe(403);
    const noAccept = await mesh.call('planner', 'POST', 'http://tools.agents/mcp', { headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell"}}' });
    expect(noAccept.status).toBe(403);
    const sse = await mesh.call('planner', 'POST', 'http://tools.agents/mcp', { headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"shell"}}' });
    expect(sse.status).toBe(200);
    expect(sse.headers['content-type']).toBe('text/event-stream');
    const event = JSON.parse(/^data: (.*)$/m.exec(sse.text)?.[1] ?? '') as unknown;
    expect(event).toMatchObject({ jsonrpc: '2.0', id: 3, error: { code: -32050, data: { error: 'denied' } } });
  });

  it('the ingress sidecar judges the arguments too, and answers a peer calling it directly with a JSON-RPC error', async () => {
    const caPem = readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8');
    const planner = caFromPem(caPem, readFileSync(join(mesh.dataDir, 'ca.key'), 'utf8')).issue({ uris: [mesh.agent('planner').identity] });
    const peer = new Agent({ connect: { ca: caPem, cert: planner.certPem, key: planner.keyPem, checkServerIdentity: () => undefined } });
    const direct = await sdkClient(`https://127.0.0.1:${mesh.agent('tools').inboundPort}/mcp`, peer);
    try {
      expect(text(await direct.callTool({ name: 'transfer', arguments: { amount: 7, currency: 'USD', memo: 'm' } }))).toBe('transferred 7 USD');
      const before = called.length;
      const err = await refusal(direct.callTool({ name: 'transfer', arguments: { amount: 1000, currency: 'USD', memo: 'm' } }));
      expect(err.code).toBe(-32050);
      expect(err.message).toMatch(/argument "amount" is above the maximum 100/);
      expect(err.data).toMatchObject({ error: 'denied' });
      expect(called.length).toBe(before);
      // Raw bytes to the ingress: a duplicate key there is the plain 403 JSON, as on the egress.
      const body = '{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"transfer","arguments":{"amount":1,"currency":"USD","memo":"m","amount":1000}}}';
      const raw = await rawHttp(mesh.agent('tools').inboundPort, `POST /mcp HTTP/1.1\r\nHost: tools.agents\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: ${body.length}\r\nConnection: close\r\n\r\n${body}`, {
        tls: { ca: caPem, cert: planner.certPem, key: planner.keyPem, checkServerIdentity: () => undefined },
      });
      expect(raw.status).toBe(403);
      expect(called.length).toBe(before);
    } finally {
      await direct.close();
      await peer.close();
    }
  });

  it('Mcp-Method / Mcp-Name headers that do not match the body are refused, on both sidecars, and audited', async () => {
    const honest = await sdkClient('http://tools.agents/mcp', proxy, { specHeaders: {} });
    const lying = await sdkClient('http://tools.agents/mcp', proxy, { specHeaders: { lie: (name) => (name === 'transfer' ? 'read_file' : name) } });
    try {
      expect(text(await honest.callTool({ name: 'transfer', arguments: { amount: 5, currency: 'USD', memo: 'm' } }))).toBe('transferred 5 USD');
      const before = called.length;
      const err = await refusal(lying.callTool({ name: 'transfer', arguments: { amount: 5, currency: 'USD', memo: 'm' } }));
      expect(err.code).toBe(-32050);
      expect(err.message).toBe('MCP error -32050: the MCP request headers do not match its body: the Mcp-Name header "read_file" does not match the body\'s "transfer"');
      expect(await auditLine((err.data as DenialData).decisionId)).toMatchObject({ verdict: 'deny', mcp: { headerMismatch: expect.stringContaining('Mcp-Name') as unknown } });
      expect(called.length).toBe(before);
    } finally {
      await honest.close();
      await lying.close();
    }
    // Raw bytes: the header twice, another method, a body too large to check; through the proxy and to the ingress directly.
    const body = '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"transfer","arguments":{"amount":5,"currency":"USD","memo":"m"}}}';
    const request = (target: string, headers: string, b = body) => `POST ${target} HTTP/1.1\r\nHost: tools.agents\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n${headers}content-length: ${Buffer.byteLength(b)}\r\nConnection: close\r\n\r\n${b}`;
    const caPem = readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8');
    const planner = caFromPem(caPem, readFileSync(join(mesh.dataDir, 'ca.key'), 'utf8')).issue({ uris: [mesh.agent('planner').identity] });
    const tls = { ca: caPem, cert: planner.certPem, key: planner.keyPem, checkServerIdentity: () => undefined };
    const before = called.length;
    const big = JSON.stringify({ jsonrpc: '2.0', id: 6, method: 'tools/call', params: { name: 'transfer', arguments: { amount: 5, currency: 'USD', memo: 'm', pad: 'x'.repeat(70_000) } } });
    for (const [headers, why, b] of [
      ['Mcp-Method: tools/call\r\nmcp-method: tools/call\r\n', /the Mcp-Method header is sent 2 times/, body],
      ['Mcp-Method: tools/list\r\n', /the Mcp-Method header "tools\/list" does not match the body's method "tools\/call"/, body],
      ['Mcp-Name: transfer\r\nMcp-Name: wipe\r\n', /the Mcp-Name header is sent 2 times/, body],
      ['Mcp-Method: tools/call\r\n', /the body cannot be read to check the Mcp-Method header \(the body is larger than 65536 bytes\)/, big],
    ] as const) {
      for (const [port, target, o] of [[mesh.agent('planner').outboundPort, 'http://tools.agents/mcp', {}], [mesh.agent('tools').inboundPort, '/mcp', { tls }]] as const) {
        const res = await rawHttp(port, request(target, headers, b), o);
        const answer = JSON.parse(res.body) as { reason?: string; error?: { message: string } };
        expect(answer.error?.message ?? answer.reason, `${port} ${headers}`).toMatch(why);
      }
    }
    expect(called.length).toBe(before);
  });

  it('explain shows the argument rule that matched, or the argument that failed', async () => {
    const from = mesh.agent('planner').identity;
    const ex = (args: unknown) => adminPost(mesh.creds, '/v1/explain', { from, to: 'tools.agents', path: '/mcp', tool: 'transfer', args }) as Promise<Record<string, unknown>>;
    expect(await ex({ amount: 100, currency: 'USD', memo: 'rent' })).toMatchObject({
      allow: true,
      policy: 'planner-tools',
      rule: 'rules[0]',
      arguments: [{ path: 'amount', value: '[redacted]' }, { path: 'currency', value: '[redacted]' }, { path: 'memo', value: '"rent"' }],
    });
    const no = await ex({ amount: 101, currency: 'USD', memo: 'rent' });
    expect(no).toMatchObject({ allow: false, arguments: [{ path: 'amount', value: '[redacted]' }] });
    expect(no.reason).toMatch(/argument "amount" is above the maximum 100/);
    // The CLI: airlock explain --tool T --args JSON.
    const credentials = join(mesh.dir, 'admin.json');
    writeFileSync(credentials, JSON.stringify(mesh.creds));
    const bin = join(import.meta.dirname, '..', 'cli', 'bin', 'airlock.js');
    const { stdout } = await promisify(execFile)(process.execPath, [bin, 'explain', '--from', from, '--to', 'tools.agents', '--path', '/mcp', '--tool', 'read_file', '--args', '{"path":"/data/a"}'], { env: { ...process.env, AIRLOCK_CREDENTIALS: credentials }, timeout: 20_000 });
    expect(stdout).toMatch(/^rule: +rules\[1\]$/m);
    expect(stdout).toMatch(/^arguments: +path=\[redacted\]$/m);
    await expect(adminPost(mesh.creds, '/v1/explain', { from, to: 'tools.agents', path: '/mcp', tool: 'transfer', args: [1] })).rejects.toThrow(/"args": the tool arguments \(params.arguments\) are not a JSON object/);
  });

  /** The control plane's audit event of a decision (pino writes asynchronously: polled briefly). */
  async function auditLine(decisionId: string): Promise<Record<string, unknown> | undefined> {
    for (let i = 0; i < 50; i++) {
      const line = readFileSync(join(mesh.dir, 'control-plane.log'), 'utf8').split('\n').find((l) => l.includes(`"decisionId":"${decisionId}"`) && l.includes('"kind":"decision"'));
      if (line !== undefined) return (JSON.parse(line) as { audit: Record<string, unknown> }).audit;
      await new Promise((r) => setTimeout(r, 100));
    }
    return undefined;
  }
});
