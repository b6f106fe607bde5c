import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';

export interface ProxyResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: <T = Record<string, unknown>>() => T;
}

/**
 * Sends one request the way an agent with HTTP_PROXY does: absolute-form to the sidecar's
 * outbound port. `curl -x http://127.0.0.1:PORT URL` sends the same bytes.
 */
export function viaProxy(
  proxyPort: number,
  method: string,
  url: string,
  o: { headers?: Record<string, string>; body?: string; timeoutMs?: number } = {},
): Promise<ProxyResponse> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port: proxyPort,
        method,
        path: url,
        headers: { host: target.host, ...o.headers },
        timeout: o.timeoutMs ?? 10_000,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: <T>() => JSON.parse(text) as T });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from the proxy in ${o.timeoutMs ?? 10_000} ms`)));
    req.on('error', reject);
    req.end(o.body);
  });
}
