// node bench/mcp-app.ts <port>: the MCP chain bench's app, a minimal MCP Streamable-HTTP server
// answering every POST with a JSON-RPC result for its id (the shape of test/support/mcp-echo-app.ts,
// without recording anything), so the app is not the bottleneck. In its own process, to be pinned.
import { createServer } from 'node:http';
import { listen } from '@airlock/common/net';

const port = Number(process.argv[2]);
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let id: unknown = null;
    try {
      id = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id?: unknown }).id ?? null;
    } catch {
      // not JSON (the bench's unread variant sends the same bytes as another type): answer anyway
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'done' }] } }));
  });
});
await listen(server, { host: '127.0.0.1', port });
process.on('SIGTERM', () => process.exit(0));
console.log('ready');
