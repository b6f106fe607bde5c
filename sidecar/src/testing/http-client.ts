import { request, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';

export interface SimpleResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** One request straight to 127.0.0.1:`port` with the request target as given (absolute-form for a proxy). */
export function rawRequest(port: number, o: { method?: string; target: string; headers?: OutgoingHttpHeaders; body?: string; timeoutMs?: number }): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    // As proxy clients do (curl -x, HTTP_PROXY): Host names the URL's authority, not the proxy.
    const host = /^http:\/\//i.test(o.target) ? new URL(o.target).host : undefined;
    const headers = host === undefined ? o.headers : { host, ...o.headers };
    const timeoutMs = o.timeoutMs ?? 10_000;
    const req = request({ host: '127.0.0.1', port, method: o.method ?? 'GET', path: o.target, headers, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from 127.0.0.1:${port} in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(o.body);
  });
}
