// For tests only: an audit collector on loopback, as an HTTP sink's URL.
import { createServer, type Server } from 'node:http';
import { closeServer } from '@airlock/common/net';

/** A collector on loopback: records each batch (its lines and bearer token), or answers `status`. */
export class Collector {
  readonly batches: { token: string | undefined; lines: string[] }[] = [];
  status = 200;
  #server: Server | undefined;
  port = 0;

  async start(port = 0): Promise<void> {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (this.status === 200) this.batches.push({ token: req.headers.authorization, lines: Buffer.concat(chunks).toString('utf8').split('\n').filter((l) => l !== '') });
        res.writeHead(this.status).end();
      });
    });
    await new Promise<void>((resolve) => this.#server?.listen(port, '127.0.0.1', resolve));
    const address = this.#server.address();
    this.port = typeof address === 'object' && address !== null ? address.port : 0;
  }

  async stop(): Promise<void> {
    if (this.#server !== undefined) await closeServer(this.#server);
    this.#server = undefined;
  }

  lines(): string[] {
    return this.batches.flatMap((b) => b.lines);
  }
}

/** Polls `cond` (bounded, generously: a sink may be backing off for seconds): delivery is asynchronous. */
export async function until(what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 2400; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`never: ${what}`);
}

