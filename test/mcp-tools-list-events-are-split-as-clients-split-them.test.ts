import { createServer, type Server } from 'node:http';
import { createParser } from 'eventsource-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen } from '@airlock/common/net';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { startEchoApp } from '../cli/src/demo/echo-app.ts';

// A malicious MCP server answers tools/list as an event stream whose events end in mixed line
// breaks (`\n\r`: a line end, then an empty line, to an SSE parser). The agent's SSE parser (the
// MCP SDK's, eventsource-parser) must read only the tools the caller may call. Found by
// sidecar/src/mcp/tools-list.fuzz.test.ts: such a second event used to pass unfiltered.
const POLICY = `${policyYaml('agents', ['planner', 'tools'], [])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: planner-mcp }
spec:
  from: { segments: [planner] }
  to: { segments: [tools] }
  rules: [ { methods: [POST], paths: [/sse], mcp: { tools: ["search_*"] } } ]
  action: allow
`;

const LIST = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'search_web' }, { name: 'delete_all' }] } });
/** Answers with the same tools/list in events ended every way SSE allows, mixed. */
const BODIES: Record<string, string> = {
  '/sse?lf-cr': `data: {}\n\rdata: ${LIST}\n\n`,
  '/sse?cr-cr': `: hello\r\rdata: ${LIST}\r\r`,
  '/sse?crlf-lf': `event: message\r\ndata: {}\r\n\ndata: ${LIST}\n\n`,
  '/sse?cr-lf': `data: {}\r\ndata: x\r\rdata: ${LIST}\n`,
};

function startHostileMcpApp(): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(BODIES[req.url ?? ''] ?? '');
    });
  });
  return listen(server, { host: '127.0.0.1', port: 0 }).then(() => server);
}

/** The tool names of every tools/list result the MCP SDK's SSE parser reads in `text`. */
function toolsRead(text: string): string[] {
  const names: string[] = [];
  const parser = createParser({
    onEvent: (e) => {
      try {
        const tools = (JSON.parse(e.data) as { result?: { tools?: { name?: string }[] } }).result?.tools;
        for (const t of tools ?? []) names.push(String(t.name));
      } catch {
        // not JSON: not a tools/list result
      }
    },
  });
  parser.feed(text);
  parser.feed('\n\n');
  return names;
}

describe('a tools/list event stream from a hostile MCP server', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startMesh({ agents: ['planner', 'tools'], policy: POLICY, startApp: (agent, onRequest) => (agent === 'tools' ? startHostileMcpApp() : startEchoApp(agent, 0, onRequest)) });
  });
  afterAll(async () => mesh.close());

  it.each(Object.keys(BODIES))('%s: the agent reads only the tools it may call', async (path) => {
    const res = await mesh.call('planner', 'POST', `http://tools.agents${path}`, {
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(res.status).toBe(200);
    expect(toolsRead(res.text)).toEqual(['search_web']);
  });
});
