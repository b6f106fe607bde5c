import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface RawResponse {
  /** 0 when the connection closed without an HTTP answer. */
  readonly status: number;
  readonly body: string;
}

/**
 * Sends bytes exactly as given (request line, headers, body) to 127.0.0.1:`port` and reads the
 * answer until the connection closes: for requests no well-behaved client would send.
 */
export function rawHttp(port: number, bytes: string | Buffer, timeoutMs = 10_000): Promise<RawResponse> {
  return exchange(connect({ host: '127.0.0.1', port }), 'connect', bytes, timeoutMs);
}

/**
 * The same over TLS with a client certificate (a peer speaking to an inbound mTLS listener
 * directly, no sidecar of its own); the server's certificate is checked against `ca` only.
 */
export function rawHttps(port: number, client: { readonly ca: string; readonly certPem: string; readonly keyPem: string }, bytes: string | Buffer, timeoutMs = 10_000): Promise<RawResponse> {
  const socket = tlsConnect({ host: '127.0.0.1', port, ca: client.ca, cert: client.certPem, key: client.keyPem, checkServerIdentity: () => undefined });
  return exchange(socket, 'secureConnect', bytes, timeoutMs);
}

function exchange(socket: Socket, ready: 'connect' | 'secureConnect', bytes: string | Buffer, timeoutMs: number): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err) => {
      clearTimeout(timer);
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') resolve(parse(Buffer.concat(chunks).toString('latin1')));
      else reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(parse(Buffer.concat(chunks).toString('latin1')));
    });
    socket.once(ready, () => socket.write(bytes));
  });
}

function parse(text: string): RawResponse {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  const split = text.indexOf('\r\n\r\n');
  return { status: m === null ? 0 : Number(m[1]), body: split === -1 ? '' : text.slice(split + 4) };
}
