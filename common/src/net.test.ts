import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { answerClientErrors, boundPort, clientErrorReply, closeServer, listen } from './net.ts';

/** Sends raw bytes and reads until the server closes the connection. */
function send(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write(bytes));
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('error', reject);
    socket.on('close', () => resolve(text));
  });
}

function jsonOf(answer: string): unknown {
  return JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4));
}

describe('answerClientErrors', () => {
  let server: Server | undefined;
  afterEach(async () => {
    if (server !== undefined) await closeServer(server);
  });
  async function start(options: Parameters<typeof createServer>[0] = {}): Promise<number> {
    server = createServer(options, (_req, res) => res.end('ok'));
    answerClientErrors(server);
    await listen(server, { host: '127.0.0.1', port: 0 });
    return boundPort(server);
  }

  it.each([
    ['a space in a header name', 'GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n', /Invalid header token|HPE_INVALID_HEADER_TOKEN/],
    ['a bare LF in the request line', 'GET / HTTP/1.1\nHost: a\r\n\r\n', /HPE_/],
    ['Content-Length and Transfer-Encoding together', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', /HPE_/],
    ['two different Content-Lengths', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab', /HPE_/],
  ])('answers %s with 400 and a JSON body, and closes', async (_what, bytes, reason) => {
    const answer = await send(await start(), bytes);
    expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(answer).toMatch(/\r\nconnection: close\r\n/i);
    expect(answer).toMatch(/\r\ncontent-type: application\/json\r\n/i);
    const body = jsonOf(answer) as { error: string; reason: string };
    expect(body.error).toBe('bad_request');
    expect(body.reason).toMatch(/^malformed HTTP request: /);
    expect(body.reason).toMatch(reason);
  });

  it('answers headers over the limit with 431 and a JSON body', async () => {
    const answer = await send(await start({ maxHeaderSize: 1024 }), `GET / HTTP/1.1\r\nHost: a\r\nx-big: ${'v'.repeat(2048)}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(jsonOf(answer)).toEqual({ error: 'headers_too_large', reason: 'the request headers are larger than the server accepts' });
  });

  it('answers a request not received in time with 408 and a JSON body', async () => {
    const port = await start({ headersTimeout: 100, requestTimeout: 100, connectionsCheckingInterval: 20 });
    const answer = await send(port, 'GET / HTTP/1.1\r\nHost: a\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(jsonOf(answer)).toEqual({ error: 'request_timeout', reason: 'the request was not received in time' });
  });

  it('writes nothing after a response has begun on the connection', async () => {
    // The first request is answered; the second, pipelined behind it, is malformed.
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': '2' });
      res.write('o');
      setImmediate(() => res.end('k'));
    });
    answerClientErrors(server);
    await listen(server, { host: '127.0.0.1', port: 0 });
    const answer = await send(boundPort(server), 'GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nBad Header: x\r\n\r\n');
    // The connection is cut (as Node's own default does): a 400 in the middle would corrupt the 200.
    expect(answer).not.toMatch(/400|bad_request/);
  });

  it('answers nothing to a peer that is gone', () => {
    expect(clientErrorReply(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }))).toBeUndefined();
  });

  it('answers nothing to a TLS failure (a handshake that timed out or was refused): there is no HTTP on such a connection', () => {
    expect(clientErrorReply(Object.assign(new Error('TLS handshake timeout'), { code: 'ERR_TLS_HANDSHAKE_TIMEOUT' }))).toBeUndefined();
    expect(clientErrorReply(Object.assign(new Error('alert'), { code: 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE' }))).toBeUndefined();
  });
});
