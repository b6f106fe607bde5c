import { createServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { boundPort, closeServer, listen } from '@airlock/common/net';

/** The first bytes node:tls sends: a real ClientHello (TLS 1.3 capable, with key shares), with `servername` as SNI. */
export async function realClientHello(servername: string | undefined): Promise<Buffer> {
  let resolveHello: (b: Buffer) => void = () => undefined;
  const hello = new Promise<Buffer>((resolve) => (resolveHello = resolve));
  const server = createServer((s) => s.once('data', (d: Buffer) => { resolveHello(d); s.destroy(); }));
  await listen(server, { host: '127.0.0.1', port: 0 });
  const client = tlsConnect({ host: '127.0.0.1', port: boundPort(server), ...(servername === undefined ? {} : { servername }) });
  client.on('error', () => undefined);
  try {
    return await hello;
  } finally {
    client.destroy();
    await closeServer(server);
  }
}
