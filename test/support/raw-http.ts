import { connect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';

export interface RawResponse {
  /** 0 when the connection closed without an HTTP answer. */
  readonly status: number;
  readonly body: string;
}

/**
 * Sends bytes exactly as given (request line, headers, body) to 127.0.0.1:`port` and reads the
 * answer until the connection closes: for requests no well-behaved client would send. With `tls`,
 * the bytes go inside a TLS connection made with those options.
 */
export function rawHttp(port: number, bytes: string | Buffer, timeoutMs = 10_000, tls?: ConnectionOptions): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = tls === undefined ? connect({ host: '127.0.0.1', port }) : tlsConnect({ host: '127.0.0.1', port, ...tls });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err: Error) => {
      clearTimeout(timer);
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') resolve(parse(Buffer.concat(chunks).toString('latin1')));
      else reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(parse(Buffer.concat(chunks).toString('latin1')));
    });
    socket.write(bytes);
  });
}

function parse(text: string): RawResponse {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  const split = text.indexOf('\r\n\r\n');
  return { status: m === null ? 0 : Number(m[1]), body: split === -1 ? '' : text.slice(split + 4) };
}
