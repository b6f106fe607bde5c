import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AuditTransport } from './spooled-sink.ts';

export interface HttpTransportOptions {
  /** http(s) URL that takes a POST of JSON lines (application/x-ndjson), e.g. an Elasticsearch bulk ingest proxy or a Splunk HEC raw endpoint. */
  readonly url: string;
  /** File holding the bearer token, read for each batch (a rotated token is picked up). */
  readonly tokenFile?: string;
  /** PEM CA bundle an https collector's certificate must chain to (default: the system's). */
  readonly caFile?: string;
  readonly requestTimeoutMs?: number;
}

/** POSTs each batch as JSON lines; a 2xx answer is delivery, anything else a failure (retried). */
export function httpTransport(o: HttpTransportOptions): AuditTransport {
  return {
    name: 'http',
    send: (lines) => post(o, `${lines.join('\n')}\n`),
  };
}

function post(o: HttpTransportOptions, body: string): Promise<void> {
  const url = new URL(o.url);
  const headers: Record<string, string> = { 'content-type': 'application/x-ndjson', 'content-length': String(Buffer.byteLength(body)) };
  // Re-read for each batch: a rotated token is used from the next one.
  if (o.tokenFile !== undefined) headers.authorization = `Bearer ${readFileSync(o.tokenFile, 'utf8').trim()}`;
  const ca = o.caFile === undefined ? undefined : readFileSync(o.caFile);
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, { method: 'POST', headers, timeout: o.requestTimeoutMs ?? 10_000, ...(ca === undefined ? {} : { ca }) }, (res) => {
      res.resume();
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) resolve();
        else reject(new Error(`the collector answered ${status}`));
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('the collector did not answer in time')));
    req.on('error', reject);
    req.end(body);
  });
}
