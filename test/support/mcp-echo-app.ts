import { createServer, type Server } from 'node:http';
import { gzipSync } from 'node:zlib';
import { listen } from '@airlock/common/net';
import type { EchoBody } from '../../cli/src/demo/echo-app.ts';

export const MCP_TOOLS = ['search_web', 'search_news', 'search_admin', 'delete_all', 'fetch'] as const;

/** What the MCP app received: the request line and headers (as the echo app records) and the body. */
export interface McpEchoBody extends EchoBody {
  readonly body: string;
}

/**
 * A minimal MCP server over streamable HTTP on 127.0.0.1: POST JSON-RPC to any path; answers
 * `initialize`, `tools/list` (every tool in MCP_TOOLS, as JSON, or as an event stream when the
 * path is /sse, gzip-encoded on /gzip, over 4 MiB on /huge) and `tools/call` (echoing the tool name and the size of what it received).
 */
export async function startMcpEchoApp(agent: string, onRequest: (body: McpEchoBody) => void): Promise<Server> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      onRequest({ agent, method: req.method ?? '', path: req.url ?? '', headers: req.headers, body });
      let msg: { id?: unknown; method?: string; params?: { name?: string } };
      try {
        msg = JSON.parse(body) as typeof msg;
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}');
        return;
      }
      const reply = (result: unknown): string => JSON.stringify({ jsonrpc: '2.0', id: msg.id, result });
      if (msg.method === 'tools/list') {
        const text = reply({ tools: MCP_TOOLS.map((name) => ({ name, description: `the ${name} tool`, inputSchema: { type: 'object' } })) });
        if (req.url === '/gzip') {
          res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(gzipSync(text));
        } else if (req.url === '/huge') {
          // Past the sidecar's 4 MiB bound for answers it filters: a long description on the first tool.
          res.writeHead(200, { 'content-type': 'application/json' }).end(text.replace('"the search_web tool"', JSON.stringify('x'.repeat(4 * 1024 * 1024 + 1))));
        } else if (req.url === '/sse') {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.end(`event: message\ndata: ${text}\n\n`);
        } else {
          res.writeHead(200, { 'content-type': 'application/json' }).end(text);
        }
        return;
      }
      const result = msg.method === 'tools/call' ? { content: [{ type: 'text', text: `called ${msg.params?.name ?? ''} with ${body.length} bytes` }] } : { protocolVersion: '2025-06-18', capabilities: { tools: {} } };
      res.writeHead(200, { 'content-type': 'application/json' }).end(reply(result));
    });
  });
  await listen(server, { host: '127.0.0.1', port: 0 });
  return server;
}
