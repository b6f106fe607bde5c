import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EchoBody } from '../cli/src/demo/echo-app.ts';
import { caFromPem } from '../sidecar/src/testing/certs.ts';
import type { Mesh } from './support/mesh.ts';
import { rawHttp } from './support/raw-http.ts';
import { startStandardMesh } from './support/standard-mesh.ts';

describe('x-forwarded-client-cert', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startStandardMesh();
  });
  afterAll(async () => mesh.close());

  const realXfcc = (): string => `By=${mesh.agent('researcher').identity};URI=${mesh.agent('planner').identity}`;
  const forged = (): string => `By=${mesh.agent('researcher').identity};URI=${mesh.agent('payments').identity}`;
  /** Names CGI/WSGI servers (HTTP_X_FORWARDED_CLIENT_CERT) and several frameworks read as XFCC. */
  const underscored = ['x_forwarded_client_cert', 'X_Forwarded_Client_Cert', 'x-forwarded_client-cert', 'x_forwarded-client-cert'];
  const namesWithUnderscore = (body: EchoBody): string[] => Object.keys(body.headers).filter((n) => n.includes('_'));

  it('forged by the calling agent never reaches the destination app', async () => {
    const res = await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search', {
      headers: { 'x-forwarded-client-cert': forged(), 'X-Forwarded-Client-Cert': forged() },
    });
    expect(res.status).toBe(200);
    const xfcc = res.json<EchoBody>().headers['x-forwarded-client-cert'];
    expect(xfcc).toBe(realXfcc());
  });

  it('spelt with underscores by the calling agent, never reaches the app (dropped by the outbound sidecar)', async () => {
    const headers: Record<string, string> = { x_tenant: 'a' };
    for (const n of underscored) headers[n] = forged();
    const res = await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search', { headers });
    expect(res.status).toBe(200);
    const body = res.json<EchoBody>();
    expect(namesWithUnderscore(body)).toEqual([]);
    expect(body.headers['x-forwarded-client-cert']).toBe(realXfcc());
  });

  it('spelt with underscores by a peer calling the inbound port directly, never reaches the app (dropped by the inbound sidecar)', async () => {
    const caPem = readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8');
    const planner = caFromPem(caPem, readFileSync(join(mesh.dataDir, 'ca.key'), 'utf8')).issue({ uris: [mesh.agent('planner').identity] });
    const lines = underscored.map((n) => `${n}: ${forged()}\r\n`).join('');
    const res = await rawHttp(
      mesh.agent('researcher').inboundPort,
      `GET /v1/search HTTP/1.1\r\nHost: researcher.agents\r\n${lines}x_tenant: a\r\nConnection: close\r\n\r\n`,
      { tls: { ca: caPem, cert: planner.certPem, key: planner.keyPem, checkServerIdentity: () => undefined } },
    );
    expect(res.status).toBe(200);
    const body = JSON.parse(res.body) as EchoBody;
    expect(namesWithUnderscore(body)).toEqual([]);
    expect(body.headers['x-forwarded-client-cert']).toBe(realXfcc());
  });
});
