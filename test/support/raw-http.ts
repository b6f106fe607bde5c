import { connect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';

export interface RawResponse {
  /** 0 when the connection closed without an HTTP answer. */
  readonly status: number;
  /** The header block as received (status line included), for checks on framing headers. */
  readonly head: string;
  readonly body: string;
}

/**
 * Sends bytes exactly as given (request line, headers, body) to 127.0.0.1:`port` and reads the
 * answer until the connection closes: for requests no well-behaved client would send. With `tls`,
 * the bytes go over TLS (the inbound mTLS listener: pass the client certificate there).
 */
export function rawHttp(port: number, bytes: string | Buffer, o: { timeoutMs?: number; tls?: ConnectionOptions } = {}): Promise<RawResponse> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const socket = o.tls === undefined ? connect({ host: '127.0.0.1', port }, () => socket.write(bytes)) : tlsConnect({ host: '127.0.0.1', port, ...o.tls }, () => socket.write(bytes));
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
  });
}

function parse(text: string): RawResponse {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  const split = text.indexOf('\r\n\r\n');
  return { status: m === null ? 0 : Number(m[1]), head: split === -1 ? text : text.slice(0, split), body: split === -1 ? '' : text.slice(split + 4) };
}
