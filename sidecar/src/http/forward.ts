import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { upstreamTimeoutError } from '../outbound/upstream-timeouts.ts';
import { responseHeadersToForward } from './headers.ts';

export interface ForwardRequest {
  /** Needed for an Agent (external hosts); a Pool knows its origin. */
  readonly origin?: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string | string[]>;
  /** Where the upstream is, for error messages. */
  readonly describe: string;
  /** The body to send when part of it was already read (MCP rules); undefined = stream `req`. */
  readonly body?: Buffer | Readable;
}

/**
 * Sends `req` on through `dispatcher` and streams the answer into `res`, both ways without
 * buffering whole bodies (undici's dispatch API, the cheapest of its forwarding APIs). If the
 * client goes away, the upstream request is aborted so pooled connections are not leaked.
 * Rejects with AIRLOCK_UPSTREAM_UNAVAILABLE (or _TIMEOUT) only while nothing has been sent to the
 * client yet; later (a body that stalls past upstreamBodyTimeout) the client's connection is cut.
 */
export function forward(dispatcher: Dispatcher, request: ForwardRequest, req: IncomingMessage, res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    let controller: Dispatcher.DispatchController | undefined;
    let clientGone = false;
    const onClientClose = (): void => {
      if (res.writableFinished) return;
      clientGone = true;
      controller?.abort(new Error('client went away'));
    };
    res.once('close', onClientClose);
    const done = (): void => {
      res.off('close', onClientClose);
    };

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (clientGone) c.abort(new Error('client went away'));
      },
      onResponseStart(_c, statusCode, headers, statusMessage) {
        if (statusCode < 200) return; // 1xx: Node answers `expect` itself; nothing to relay.
        const out = responseHeadersToForward(headers);
        if (statusMessage === undefined || statusMessage === '') res.writeHead(statusCode, out);
        else res.writeHead(statusCode, statusMessage, out);
      },
      onResponseData(c, chunk) {
        if (!res.write(chunk)) {
          c.pause();
          res.once('drain', () => c.resume());
        }
      },
      onResponseEnd() {
        done();
        res.end();
        resolve();
      },
      onResponseError(_c, err) {
        done();
        if (clientGone) {
          resolve();
        } else if (res.headersSent) {
          res.destroy(err);
          resolve();
        } else {
          // Our own refusal (a forbidden destination address, from the external Agent's connector) stays itself.
          reject(err instanceof AirlockError ? err : (upstreamTimeoutError(err, request.describe) ?? new AirlockError(ErrorCode.UpstreamUnavailable, `${request.describe}: ${describeCause(err)}`, { cause: err })));
        }
      },
    };

    dispatcher.dispatch(
      {
        origin: request.origin,
        method: request.method,
        path: request.path,
        headers: request.headers,
        body: request.body ?? (hasBody(req) ? req : null),
      },
      handler,
    );
  });
}

/** A request without Content-Length or Transfer-Encoding has no body (RFC 9112 §6.3). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function describeCause(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  const message = errorMessage(err);
  return code !== undefined && !message.includes(code) ? `${code} ${message}` : message;
}
