import { STATUS_CODES, type Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Server } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenAddress } from './config.ts';
import { AirlockError, ErrorCode } from './errors.ts';
import type { Logger } from './logging.ts';

/** Listens and resolves once bound; a taken port becomes a clear error rather than a crash. */
export function listen(server: Server, address: ListenAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why = err.code === 'EADDRINUSE' ? 'the address is already in use' : err.code === 'EACCES' ? 'permission denied' : err.message;
      reject(new AirlockError(ErrorCode.Config, `cannot listen on ${address.host}:${address.port}: ${why}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(address.port, address.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    (server as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
  });
}

export function boundPort(server: Server): number {
  const a = server.address();
  if (a === null || typeof a === 'string') throw new AirlockError(ErrorCode.Internal, 'server is not listening on a TCP port');
  return a.port;
}

/** What a request Node's HTTP parser refused is answered with; undefined: nothing (the peer is gone, or never finished TLS). */
export function clientErrorReply(err: NodeJS.ErrnoException): { status: number; body: { error: string; reason: string } } | undefined {
  // An https server hands its TLS failures (a handshake timeout, an alert) to 'clientError' too:
  // there is no HTTP to answer on a connection whose handshake did not finish, only a close.
  if (err.code?.startsWith('ERR_TLS_') === true || err.code?.startsWith('ERR_SSL_') === true) return undefined;
  switch (err.code) {
    case 'ECONNRESET':
    case 'EPIPE':
      return undefined;
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, body: { error: 'headers_too_large', reason: 'the request headers are larger than the server accepts' } };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: 413, body: { error: 'too_large', reason: 'the chunk extensions are larger than the server accepts' } };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, body: { error: 'request_timeout', reason: 'the request was not received in time' } };
    default: {
      // llhttp's `reason` names the fault ("Invalid header value char") without echoing the bytes.
      const why = (err as { reason?: unknown }).reason;
      return { status: 400, body: { error: 'bad_request', reason: `malformed HTTP request: ${typeof why === 'string' ? why : err.message} (${err.code ?? 'unknown'})` } };
    }
  }
}

/** A whole JSON answer with `Connection: close`, for a raw socket (no ServerResponse to write it). */
export function rawJsonAnswer(status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): string {
  const text = JSON.stringify(body);
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${extra}content-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`;
}

/**
 * Answers requests Node's HTTP parser refuses (malformed framing, headers too large, a request
 * not received in time) with a JSON body and `Connection: close`, like every other answer of the
 * server, instead of Node's bare status line. Nothing is written once a response has begun on
 * the connection (that would corrupt it) or when the socket is no longer writable. For any
 * node:http or node:https server (the control plane's admin server can use it too).
 */
export function answerClientErrors(server: HttpServer | HttpsServer, log?: Logger): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const reply = clientErrorReply(err);
    log?.debug({ code: err.code, status: reply?.status }, 'refused a malformed request');
    // Node's own default makes the same check on its (internal) in-flight response.
    const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (reply === undefined || !socket.writable || inFlight?.headersSent === true) {
      socket.destroy();
      return;
    }
    socket.end(rawJsonAnswer(reply.status, reply.body), () => socket.destroy());
  });
}
