import { createServer, type Server } from 'node:http';
import { listen } from '@airlock/common/net';

/** What every demo agent answers: who it is and what it received, so a caller can see the hop. */
export interface EchoBody {
  agent: string;
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
}

/** A demo agent app: plain HTTP on 127.0.0.1, answering every request with an EchoBody. */
export async function startEchoApp(agent: string, port: number, onRequest?: (body: EchoBody) => void): Promise<Server> {
  const server = createServer((req, res) => {
    // Drain the request body before answering so keep-alive connections stay usable.
    req.resume();
    req.on('end', () => {
      const body: EchoBody = { agent, method: req.method ?? '', path: req.url ?? '', headers: req.headers };
      onRequest?.(body);
      const text = JSON.stringify(body);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    });
  });
  server.keepAliveTimeout = 65_000;
  await listen(server, { host: '127.0.0.1', port });
  return server;
}
