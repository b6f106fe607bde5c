import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ConnectionOptions } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caFromPem } from '../sidecar/src/testing/certs.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { rawHttp, type RawResponse } from './support/raw-http.ts';

/**
 * Requests whose framing two HTTP parsers could read differently, sent as raw bytes to each of a
 * sidecar's listeners: the outbound proxy, the inbound mTLS port (with a valid SVID of an allowed
 * peer) and the admin port. Each is refused with a JSON body; nothing reaches the app.
 */
describe('malformed requests on every sidecar listener', () => {
  let mesh: Mesh;
  let plannerTls: ConnectionOptions;
  const appSaw = (): number => mesh.agent('researcher').received.length;

  beforeAll(async () => {
    mesh = await startMesh({
      agents: ['planner', 'researcher'],
      policy: policyYaml('agents', ['planner', 'researcher'], [{ name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] }]),
    });
    const ca = caFromPem(readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8'), readFileSync(join(mesh.dataDir, 'ca.key'), 'utf8'));
    const planner = ca.issue({ uris: [mesh.agent('planner').identity] });
    plannerTls = { ca: readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8'), cert: planner.certPem, key: planner.keyPem, checkServerIdentity: () => undefined };
  });
  afterAll(async () => mesh.close());

  const outbound = (headers: string, line = 'GET http://researcher.agents/v1/search HTTP/1.1'): Promise<RawResponse> =>
    rawHttp(mesh.agent('planner').outboundPort, `${line}\r\n${headers}Connection: close\r\n\r\n`);
  const inbound = (headers: string): Promise<RawResponse> =>
    rawHttp(mesh.agent('researcher').inboundPort, `GET /v1/search HTTP/1.1\r\n${headers}Connection: close\r\n\r\n`, { tls: plannerTls });

  function expectJson(res: RawResponse, status: number, error: string, reason: RegExp): void {
    expect(res.status).toBe(status);
    expect(res.head).toMatch(/\r\ncontent-type: application\/json(\r\n|$)/i);
    const body = JSON.parse(res.body) as { error: string; reason: string };
    expect(body.error).toBe(error);
    expect(body.reason).toMatch(reason);
  }

  it('serves one Host header on both listeners (the control case)', async () => {
    expect((await outbound('Host: researcher.agents\r\n')).status).toBe(200);
    expect((await inbound('Host: researcher.agents\r\n')).status).toBe(200);
  });

  // RFC 9112 §3.2: more than one Host is a 400. Node keeps the first and drops the rest; a server
  // behind the sidecar may keep the last.
  const twoHosts: [string, string][] = [
    ['the first naming the destination, the second another host', 'Host: researcher.agents\r\nHost: payments.agents\r\n'],
    ['the first naming another host, the second the destination', 'Host: payments.agents\r\nHost: researcher.agents\r\n'],
    ['the same host twice, spelt Host and host', 'Host: researcher.agents\r\nhost: researcher.agents\r\n'],
    ['an empty second Host', 'Host: researcher.agents\r\nHost: \r\n'],
    ['a second HOST after other headers', 'Host: researcher.agents\r\nAccept: */*\r\nHOST: researcher.agents:80\r\n'],
  ];

  it.each(twoHosts)('refuses two Host headers (%s) on the outbound proxy, before any decision', async (_what, headers) => {
    const before = appSaw();
    expectJson(await outbound(headers), 400, 'bad_request', /more than one Host header/);
    expect(appSaw()).toBe(before);
  });

  it.each(twoHosts)('refuses two Host headers (%s) on the inbound mTLS listener', async (_what, headers) => {
    const before = appSaw();
    expectJson(await inbound(headers), 400, 'bad_request', /more than one Host header/);
    expect(appSaw()).toBe(before);
  });

  it('refuses two Host headers with an absolute-form URL, and on a CONNECT', async () => {
    const before = appSaw();
    expectJson(await outbound('Host: researcher.agents\r\nHost: researcher.agents\r\n', 'GET http://researcher.agents/v1/search HTTP/1.1'), 400, 'bad_request', /more than one Host header/);
    expectJson(await outbound('Host: researcher.agents:443\r\nHost: researcher.agents:443\r\n', 'CONNECT researcher.agents:443 HTTP/1.1'), 400, 'bad_request', /more than one Host header/);
    expect(appSaw()).toBe(before);
  });

  it('refuses an HTTP/1.1 request without Host with a JSON 400 on both listeners (Node answered with no body)', async () => {
    const before = appSaw();
    expectJson(await outbound(''), 400, 'bad_request', /missing Host header/);
    expectJson(await inbound(''), 400, 'bad_request', /missing Host header/);
    expect(appSaw()).toBe(before);
  });

  const malformed: [string, string][] = [
    ['a space in a header name', 'Host: researcher.agents\r\nBad Header: x\r\n'],
    ['Content-Length and Transfer-Encoding together', 'Host: researcher.agents\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n'],
    ['a header line with no colon', 'Host: researcher.agents\r\nno-colon-here\r\n'],
  ];

  it.each(malformed)("answers Node's parser refusal (%s) with a JSON 400 on the outbound proxy", async (_what, headers) => {
    const before = appSaw();
    const res = await outbound(headers);
    expectJson(res, 400, 'bad_request', /^malformed HTTP request: .*\(HPE_/);
    expect(res.head).toMatch(/\r\nconnection: close(\r\n|$)/i);
    expect(appSaw()).toBe(before);
  });

  it.each(malformed)("answers Node's parser refusal (%s) with a JSON 400 on the inbound mTLS listener", async (_what, headers) => {
    const before = appSaw();
    const res = await inbound(headers);
    expectJson(res, 400, 'bad_request', /^malformed HTTP request: .*\(HPE_/);
    expect(res.head).toMatch(/\r\nconnection: close(\r\n|$)/i);
    expect(appSaw()).toBe(before);
  });

  it("answers Node's parser refusal with a JSON 400 on the admin port", async () => {
    const res = await rawHttp(mesh.agent('planner').adminPort, 'GET /metrics HTTP/1.1\r\nHost: a\r\nBad Header: x\r\nConnection: close\r\n\r\n');
    expectJson(res, 400, 'bad_request', /^malformed HTTP request: /);
  });

  it('answers headers over the limit with a JSON 431 on each listener', async () => {
    const big = `x-big: ${'v'.repeat(20 * 1024)}\r\n`;
    expectJson(await outbound(`Host: researcher.agents\r\n${big}`), 431, 'headers_too_large', /larger/);
    expectJson(await inbound(`Host: researcher.agents\r\n${big}`), 431, 'headers_too_large', /larger/);
    expectJson(await rawHttp(mesh.agent('planner').adminPort, `GET /metrics HTTP/1.1\r\nHost: a\r\n${big}Connection: close\r\n\r\n`), 431, 'headers_too_large', /larger/);
  });
});
