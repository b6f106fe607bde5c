import { STATUS_CODES, type Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';

/** What Node's parser refuses, as the status Node would send and the JSON every other refusal has. */
function refusalOf(code: string | undefined): { status: number; error: string; reason: string } {
  if (code === 'HPE_HEADER_OVERFLOW') return { status: 431, error: 'bad_request', reason: 'the request headers are too large' };
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return { status: 408, error: 'request_timeout', reason: 'the request was not received in time' };
  return { status: 400, error: 'bad_request', reason: 'malformed HTTP request' };
}

/**
 * Answers a request Node's HTTP parser refuses (a bad request line or header, headers over the
 * limit, a request not received in time) with a JSON body like every other refusal, instead of
 * Node's bare `400 Bad Request`, then closes: the parser cannot tell where a next request would start.
 */
export function answerClientErrorsAsJson(server: Server | HttpsServer): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // As Node's own handler: never write into a response already under way (it would corrupt it).
    const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent === true) {
      socket.destroy();
      return;
    }
    const { status, error, reason } = refusalOf(err.code);
    const body = JSON.stringify({ error, reason });
    const head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`;
    socket.end(head + body, () => socket.destroy());
  });
}
