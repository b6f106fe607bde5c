// An MCP server made with the real MCP TypeScript SDK, stateless Streamable HTTP on 127.0.0.1: the
// app behind a sidecar in the MCP end-to-end tests. Each test registers its own tools.
import { createServer, type Server } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { listen } from '@airlock/common/net';
import type { EchoBody } from '../../cli/src/demo/echo-app.ts';

/** A tool's result that says `text`, recorded in `called` (what reached the app). */
export function recorder(called: string[]): (text: string) => { content: { type: 'text'; text: string }[] } {
  return (text) => {
    called.push(text);
    return { content: [{ type: 'text' as const, text }] };
  };
}

/** Starts the app for `agent`: every request is reported to `onRequest`, then served by a fresh SDK server with `register`'s tools. */
export async function startSdkMcpApp(agent: string, onRequest: (body: EchoBody) => void, register: (mcp: McpServer) => void): Promise<Server> {
  const server = createServer((req, res) => {
    onRequest({ agent, method: req.method ?? '', path: req.url ?? '', headers: req.headers });
    const mcp = new McpServer({ name: 'tools', version: '1.0.0' });
    register(mcp);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => void transport.close().then(() => mcp.close()));
    void mcp.connect(transport).then(() => transport.handleRequest(req, res));
  });
  await listen(server, { host: '127.0.0.1', port: 0 });
  return server;
}
