import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRootLogger } from '@airlock/common/logging';
import { adminGet, adminPost } from '../cli/src/admin-client.ts';
import type { AdminCredentials } from '../cli/src/credentials.ts';
import { CertificateAuthority } from '../control-plane/src/ca/ca.ts';
import { checkAdminTransport, controlPlaneConfig, isLoopbackHost } from '../control-plane/src/config/config.ts';
import { controlPlaneSpiffeId, startControlPlane } from '../control-plane/src/main.ts';
import { startTestControlPlane, TD, type TestControlPlane } from '../control-plane/src/testing/test-control-plane.ts';
import { rawHttp } from './support/raw-http.ts';

const SEGMENT = 'apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: demo }\nspec: { selector: { namespace: demo } }\n';
const AGENT = `spiffe://${TD}/ns/demo/sa/agent`;

/** A request Node's HTTP parser refuses: a header line without a colon. */
const MALFORMED = 'GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n';

describe('the admin API is HTTPS with the control plane certificate; metrics and probes stay plain HTTP', () => {
  let t: TestControlPlane;
  let creds: AdminCredentials;
  let foreignCaFile: string;
  const tokensFor = async (identity: string): Promise<number> =>
    ((await adminGet(creds, '/v1/join-tokens')) as { items: { identity: string }[] }).items.filter((i) => i.identity === identity).length;

  beforeAll(async () => {
    t = await startTestControlPlane(SEGMENT, 'airlock-admin-tls-');
    // What the demo's credentials file gives the CLI: the server and the trust bundle file.
    creds = { server: t.cp.adminUrl, token: t.cp.adminToken, caFile: join(t.dataDir, 'trust-bundle.pem') };
    const foreign = CertificateAuthority.loadOrCreate(join(t.dataDir, '..', 'foreign'), TD);
    foreignCaFile = join(t.dataDir, '..', 'foreign-ca.pem');
    writeFileSync(foreignCaFile, foreign.certPem);
  });
  afterAll(() => t.close());

  it('answers the CLI over HTTPS, the server recognized by the trust bundle and its SPIFFE ID', async () => {
    expect(t.cp.adminUrl).toBe(`https://127.0.0.1:${t.cp.adminPort}`);
    const created = (await adminPost(creds, '/v1/join-tokens', { identity: AGENT })) as { identity: string };
    expect(created.identity).toBe(AGENT);
    // The same with the exact identity a credentials file may name.
    const exact = { ...creds, serverId: controlPlaneSpiffeId(TD) };
    expect(await adminGet(exact, '/v1/policy')).toMatchObject({ version: 1 });
  });

  it('is refused by a client trusting another CA, or expecting another identity, before the token is sent', async () => {
    const before = await tokensFor(`${AGENT}-x`);
    await expect(adminPost({ ...creds, caFile: foreignCaFile }, '/v1/join-tokens', { identity: `${AGENT}-x` })).rejects.toThrow(/cannot reach the control plane .*(certificate|self.signed)/i);
    await expect(adminPost({ ...creds, serverId: AGENT }, '/v1/join-tokens', { identity: `${AGENT}-x` })).rejects.toThrow(
      `the server presented ${controlPlaneSpiffeId(TD)}, expected ${AGENT}`,
    );
    // Trusting the system's CAs only (no bundle): the control plane's own root is not among them.
    const systemCas = { server: creds.server, token: creds.token };
    await expect(adminGet(systemCas, '/v1/policy')).rejects.toThrow(/cannot reach the control plane/);
    expect(await tokensFor(`${AGENT}-x`)).toBe(before);
  });

  it('refuses a client that speaks TLS 1.2 at most, and keeps the admin token file readable by its owner alone', async () => {
    const { connect } = await import('node:tls');
    const attempt = (maxVersion: 'TLSv1.2' | 'TLSv1.3'): Promise<string> =>
      new Promise((resolve) => {
        const s = connect({ host: '127.0.0.1', port: t.cp.adminPort, ca: readFileSync(join(t.dataDir, 'trust-bundle.pem')), maxVersion, checkServerIdentity: () => undefined }, () => {
          resolve(s.getProtocol() ?? 'connected');
          s.destroy();
        });
        s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      });
    expect(await attempt('TLSv1.3')).toBe('TLSv1.3');
    expect(await attempt('TLSv1.2')).toMatch(/^ERR_SSL_|ECONNRESET|alert/i);
    expect(statSync(join(t.dataDir, 'admin-token')).mode & 0o777).toBe(0o600);
  });

  it('speaks no plain HTTP on the admin port', async () => {
    const answer = await rawHttp(t.cp.adminPort, `POST /v1/join-tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t.cp.adminToken}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`).catch(() => ({ status: 0, body: '' }));
    expect(answer.status).toBe(0);
  });

  it('serves /metrics, /healthz and /readyz on the plain port with no TLS, and no admin route there', async () => {
    const plain = `http://127.0.0.1:${t.cp.httpPort}`;
    expect((await fetch(`${plain}/healthz`)).status).toBe(200);
    expect((await fetch(`${plain}/readyz`)).status).toBe(200);
    expect(await (await fetch(`${plain}/metrics`)).text()).toContain('airlock_control_plane_certificate_expiry_timestamp_seconds');
    const before = await tokensFor(`${AGENT}-plain`);
    for (const path of ['/v1/join-tokens', '/v1', '/v1/policy?x=1']) {
      const res = await fetch(`${plain}${path}`, { method: 'POST', headers: { authorization: `Bearer ${t.cp.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ identity: `${AGENT}-plain` }) });
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual({ error: 'not_found', reason: `the admin API is not served on this port: it is on port ${t.cp.adminPort} over https (adminListen)` });
    }
    // Other spellings reach no admin route either: this listener has none.
    for (const path of ['/V1/join-tokens', '/%761/join-tokens', '//v1/join-tokens']) {
      expect((await fetch(`${plain}${path}`, { method: 'POST', headers: { authorization: `Bearer ${t.cp.adminToken}` }, body: '{}' })).status).toBe(404);
    }
    expect(await tokensFor(`${AGENT}-plain`)).toBe(before);
  });

  it("answers requests Node's parser refuses with a JSON body, on the plain and the TLS listener (raw bytes)", async () => {
    const tls = { ca: readFileSync(join(t.dataDir, 'trust-bundle.pem')) };
    for (const [port, options] of [[t.cp.httpPort, undefined], [t.cp.adminPort, tls]] as const) {
      const bad = await rawHttp(port, MALFORMED, { tls: options });
      expect(bad.status).toBe(400);
      const refusal = JSON.parse(bad.body) as { error: string; reason: string };
      expect(refusal.error).toBe('bad_request');
      expect(refusal.reason).toMatch(/^malformed HTTP request/);
      const huge = await rawHttp(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, { tls: options });
      expect(huge.status).toBe(431);
      expect(JSON.parse(huge.body)).toMatchObject({ error: 'headers_too_large' });
      const smuggled = await rawHttp(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', { tls: options });
      expect(smuggled.status).toBe(400);
      expect(JSON.parse(smuggled.body)).toMatchObject({ error: 'bad_request' });
    }
  });

  it('presents the renewed serving certificate to new connections after a root rollover', async () => {
    const before = await peerCertificate(t.cp.adminPort, join(t.dataDir, 'trust-bundle.pem'));
    await adminPost(creds, '/v1/ca/prepare', {});
    await adminPost(creds, '/v1/ca/activate', {});
    const after = await peerCertificate(t.cp.adminPort, join(t.dataDir, 'trust-bundle.pem'));
    expect(after.serialNumber).not.toBe(before.serialNumber);
    expect(after.issuer).not.toEqual(before.issuer);
    // The CLI follows: it reads the bundle file, which the control plane keeps current.
    expect(await adminGet(creds, '/v1/policy')).toMatchObject({ version: 1 });
  });
});

async function peerCertificate(port: number, caFile: string): Promise<import('node:tls').PeerCertificate> {
  const { connect } = await import('node:tls');
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca: readFileSync(caFile) }, () => {
      resolve(socket.getPeerCertificate());
      socket.destroy();
    });
    socket.on('error', reject);
  });
}

describe('adminTransport', () => {
  const quiet = createRootLogger({ process: 't', level: 'silent' });

  it.each(['0.0.0.0', '::', '10.1.2.3', 'fd00::1', 'example.com'])('refuses plain HTTP on %s without http-insecure: a config error, before any state', async (host) => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-admin-http-'));
    try {
      const adminListen = host.includes(':') ? `[${host}]:0` : `${host}:0`;
      const config = controlPlaneConfig.load({ flags: { dataDir: join(dir, 'data'), grpcListen: '127.0.0.1:0', httpListen: '127.0.0.1:0', adminListen, adminTransport: 'http' } });
      await expect(startControlPlane(config, { logger: quiet })).rejects.toMatchObject({
        code: 'AIRLOCK_CONFIG_INVALID',
        message: expect.stringContaining('adminTransport http serves the admin API and its bearer tokens in clear text, so it needs a loopback adminListen') as unknown,
      });
      expect(existsSync(join(dir, 'data'))).toBe(false);
      // The explicit setting is what allows it.
      expect(() => checkAdminTransport({ ...config, adminTransport: 'http-insecure' })).not.toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['127.0.0.1', true], ['127.8.9.10', true], ['::1', true], ['0:0:0:0:0:0:0:1', true], ['::ffff:127.0.0.1', true], ['localhost', true],
    ['0.0.0.0', false], ['::', false], ['10.0.0.1', false], ['::ffff:10.0.0.1', false], ['128.0.0.1', false], ['127.0.0.1.nip.io', false], ['localhost.example.com', false],
  ])('takes %s as loopback: %s', (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });

  it('serves plain HTTP on a loopback address with http (no warning), and warns with http-insecure', async () => {
    for (const adminTransport of ['http', 'http-insecure'] as const) {
      const dir = mkdtempSync(join(tmpdir(), 'airlock-admin-http-'));
      const lines: Record<string, unknown>[] = [];
      const logger = createRootLogger({ process: 't', level: 'warn', destination: { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) } });
      const config = controlPlaneConfig.load({ flags: { dataDir: join(dir, 'data'), grpcListen: '127.0.0.1:0', httpListen: '127.0.0.1:0', adminListen: '127.0.0.1:0', adminTransport } });
      const cp = await startControlPlane(config, { logger });
      try {
        expect(cp.adminUrl).toBe(`http://127.0.0.1:${cp.adminPort}`);
        const res = await fetch(`${cp.adminUrl}/v1/policy`, { headers: { authorization: `bearer ${cp.adminToken}` } });
        expect(res.status).toBe(200);
        const bad = await rawHttp(cp.adminPort, MALFORMED);
        expect(bad.status).toBe(400);
        expect(JSON.parse(bad.body)).toMatchObject({ error: 'bad_request' });
        const warnings = lines.filter((l) => typeof l.msg === 'string' && l.msg.includes('admin API is served as plain HTTP'));
        expect(warnings.length).toBe(adminTransport === 'http-insecure' ? 1 : 0);
      } finally {
        await cp.close();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });
});
