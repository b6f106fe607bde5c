import type { IncomingHttpHeaders } from 'node:http';
import { rawRequest } from '../../sidecar/src/testing/http-client.ts';

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
export async function viaProxy(
  proxyPort: number,
  method: string,
  url: string,
  o: { headers?: Record<string, string>; body?: string; timeoutMs?: number } = {},
): Promise<ProxyResponse> {
  const r = await rawRequest(proxyPort, { method, target: url, ...o });
  return { status: r.status, headers: r.headers, text: r.body, json: <T>() => JSON.parse(r.body) as T };
}
