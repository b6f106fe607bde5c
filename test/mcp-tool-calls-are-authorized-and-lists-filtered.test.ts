import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminPost } from '../cli/src/admin-client.ts';
import { startMcpEchoApp, type McpEchoBody } from './support/mcp-echo-app.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { startEchoApp } from '../cli/src/demo/echo-app.ts';

// planner may call tools matching search_* on tools.agents (but not search_admin*), over POST /mcp
// and /sse; researcher may POST /mcp without MCP rules (any tool).
const POLICY = `${policyYaml('agents', ['planner', 'researcher', 'tools'], [])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: planner-mcp }
spec:
  from: { segments: [planner] }
  to: { segments: [tools] }
  rules: [ { methods: [POST], paths: [/mcp, /sse, /gzip, /huge], mcp: { tools: ["search_*"] } } ]
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: no-admin-tools }
spec:
  from: { segments: [planner] }
  to: { segments: [tools] }
  rules: [ { paths: [/mcp, /sse], mcp: { tools: ["search_admin*"] } } ]
  action: deny
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: researcher-mcp }
spec:
  from: { segments: [researcher] }
  to: { segments: [tools] }
  rules: [ { methods: [POST], paths: [/mcp] } ]
  action: allow
`;

const rpc = (method: string, params?: Record<string, unknown>): string => JSON.stringify({ jsonrpc: '2.0', id: 1, method, ...(params === undefined ? {} : { params }) });
const JSON_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

describe('MCP over streamable HTTP through the mesh', () => {
  let mesh: Mesh;
  const received: McpEchoBody[] = [];
  const call = (from: string, body: string, path = '/mcp') => mesh.call(from, 'POST', `http://tools.agents${path}`, { headers: JSON_HEADERS, body });

  beforeAll(async () => {
    mesh = await startMesh({
      agents: ['planner', 'researcher', 'tools'],
      policy: POLICY,
      startApp: (agent, onRequest) => (agent === 'tools' ? startMcpEchoApp(agent, (b) => { received.push(b); onRequest(b); }) : startEchoApp(agent, 0, onRequest)),
    });
  });
  afterAll(async () => mesh.close());

  it('lets initialize and an allowed tools/call through, with the body unchanged', async () => {
    expect((await call('planner', rpc('initialize', { protocolVersion: '2025-06-18' }))).status).toBe(200);
    const body = rpc('tools/call', { name: 'search_web', arguments: { q: 'cats' } });
    const res = await call('planner', body);
    expect(res.status).toBe(200);
    expect(res.json<{ result: { content: { text: string }[] } }>().result.content[0]?.text).toBe(`called search_web with ${body.length} bytes`);
    expect(received.at(-1)?.body).toBe(body);
  });

  it('refuses a tool no policy allows, and one a deny names, with a JSON-RPC error naming why (the 403 JSON in error.data); nothing reaches the app', async () => {
    const before = received.length;
    type Denial = { id: number; error: { code: number; message: string; data: Record<string, unknown> } };
    const res = await call('planner', rpc('tools/call', { name: 'delete_all' }));
    expect(res.status).toBe(200);
    expect(res.json<Denial>()).toMatchObject({ jsonrpc: '2.0', id: 1, error: { code: -32050, data: { error: 'denied', policy: '', policyVersion: 1, rule: '' } } });
    expect(res.json<Denial>().error.message).toMatch(/no policy allows POST \/mcp \(MCP tools\/call delete_all\)/);
    const admin = await call('planner', rpc('tools/call', { name: 'search_admin_users' }));
    expect(admin.json<Denial>().error.data).toMatchObject({ error: 'denied', policy: 'no-admin-tools', policyVersion: 1, rule: 'rules[0]' });
    // Without an Accept a Streamable HTTP client sends, the plain 403 JSON.
    const plain = await mesh.call('planner', 'POST', 'http://tools.agents/mcp', { headers: { 'content-type': 'application/json' }, body: rpc('tools/call', { name: 'delete_all' }) });
    expect(plain.status).toBe(403);
    expect(plain.json()).toMatchObject({ error: 'denied', policy: '' });
    expect(received.length).toBe(before);
  });

  it('refuses a body larger than the limit, or not JSON-RPC, where MCP rules apply, and says why', async () => {
    const before = received.length;
    const big = rpc('tools/call', { name: 'search_web', arguments: { pad: 'x'.repeat(70 * 1024) } });
    const res = await call('planner', big);
    expect(res.status).toBe(403);
    expect(res.json<{ reason: string }>().reason).toMatch(/not a readable MCP request \(the body is larger than 65536 bytes\)/);
    const notRpc = await call('planner', '{"hello":"world"}');
    expect(notRpc.status).toBe(403);
    expect(notRpc.json<{ reason: string }>().reason).toMatch(/not JSON-RPC 2\.0/);
    expect(received.length).toBe(before);
    // Where no MCP rule applies, a large body is forwarded whole, replayed past the prefix read.
    const through = await call('researcher', big);
    expect(through.status).toBe(200);
    expect(received.at(-1)?.body).toBe(big);
  });

  it('filters tools/list to the tools the caller may call, as JSON and as an event stream', async () => {
    const names = (tools: { name: string }[]): string[] => tools.map((t) => t.name);
    const res = await call('planner', rpc('tools/list'));
    expect(res.status).toBe(200);
    expect(names(res.json<{ result: { tools: { name: string }[] } }>().result.tools)).toEqual(['search_web', 'search_news']);
    const sse = await call('planner', rpc('tools/list'), '/sse');
    expect(sse.status).toBe(200);
    expect(sse.headers['content-type']).toMatch(/^text\/event-stream/);
    const data = JSON.parse(/^data: (.*)$/m.exec(sse.text)?.[1] ?? '') as { result: { tools: { name: string }[] } };
    expect(names(data.result.tools)).toEqual(['search_web', 'search_news']);
    // Another caller's policy allows every tool: its list is whole.
    const all = await call('researcher', rpc('tools/list'));
    expect(names(all.json<{ result: { tools: { name: string }[] } }>().result.tools)).toEqual(['search_web', 'search_news', 'search_admin', 'delete_all', 'fetch']);
  });

  it('refuses a tools/list answer it cannot filter (gzip-encoded, or over 4 MiB) with 502, never passing it on whole', async () => {
    for (const path of ['/gzip', '/huge']) {
      const res = await call('planner', rpc('tools/list'), path);
      expect(res.status).toBe(502);
      expect(res.text).not.toContain('search_admin');
      expect(res.text).toMatch(path === '/gzip' ? /encoded \(gzip\) and cannot be filtered/ : /larger than 4194304 bytes/);
    }
  });

  it('explains a tool call without traffic', async () => {
    const from = mesh.agent('planner').identity;
    const ex = (tool: string) => adminPost(mesh.creds, '/v1/explain', { from, to: 'tools.agents', path: '/mcp', tool }) as Promise<{ allow: boolean; policy: string; rule: string }>;
    expect(await ex('search_web')).toMatchObject({ allow: true, policy: 'planner-mcp', rule: 'rules[0]' });
    expect(await ex('search_admin')).toMatchObject({ allow: false, policy: 'no-admin-tools' });
    expect(await ex('delete_all')).toMatchObject({ allow: false, policy: '' });
  });
});
