// Issue 16 item 1, the control plane's side: its gRPC, admin API and metrics listeners hold limits.
// A client that opens TLS and says nothing, one that sends its headers a byte at a time, and a flood
// of connections are each cut (in seconds, not Node's two minutes) and counted, while sidecars'
// calls and probes go on.
import { get as httpGet } from 'node:http';
import { connect as http2Connect, type Settings } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEALTH_PROTO, healthCheck, serviceClient } from './support/grpc-health.ts';
import { adminFetch, openAuthorizeStream, RESEARCHER, RESEARCHERS_TO_EXAMPLE, startTestControlPlane, type TestControlPlane } from '../control-plane/src/testing/test-control-plane.ts';
import { AuthorizeRequest, Direction, Verdict } from '@airlock/proto/authorization/v1';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '../control-plane/src/ca/ca.ts';
import { makeCsr } from '../control-plane/src/ca/test-csr.ts';
import { TD, type Identity } from '../control-plane/src/testing/test-control-plane.ts';

/** Resolves with what the server sent once it closes the connection (bounded: 20 s, else 'still open'). */
function closed(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => undefined);
    const timer = setTimeout(() => resolve('still open'), 20_000);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

const opened = async (port: number): Promise<Socket> => {
  const s = connect(port, '127.0.0.1');
  await new Promise((r) => s.once('connect', r));
  return s;
};

/** GET /metrics on a connection of its own, closed after (a kept-alive one would count against the metrics port's cap). */
function metricsText(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    httpGet({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

async function refused(t: TestControlPlane, listener: string, reason: string): Promise<number> {
  const text = await metricsText(t.cp.httpPort);
  const m = new RegExp(`^airlock_control_plane_connections_refused_total\\{[^}]*listener="${listener}"[^}]*reason="${reason}"[^}]*\\} (\\d+)`, 'm').exec(text);
  return Number(m?.[1] ?? 0);
}

/** A sidecar's decision over AuthorizeStream: the control case that must keep working. */
async function decides(t: TestControlPlane): Promise<boolean> {
  const stream = openAuthorizeStream(t.cp, t.svid(RESEARCHER));
  try {
    const [result] = await stream.send([{ id: 1, request: AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: RESEARCHER, destinationHost: 'api.example.com', destinationPort: 443, method: 'GET', path: '/' }) }]);
    return result?.decision?.verdict === Verdict.VERDICT_ALLOW;
  } finally {
    stream.close();
  }
}

describe('control-plane listener timeouts', () => {
  let t: TestControlPlane;
  beforeAll(async () => {
    t = await startTestControlPlane(RESEARCHERS_TO_EXAMPLE, 'airlock-cp-limits-', {}, { headersTimeout: '1s', tlsHandshakeTimeout: '1s' });
  });
  afterAll(() => t.close());

  it.each(['grpc', 'admin'] as const)('cuts a client that opens the %s port and never finishes its TLS handshake, and counts it', { timeout: 30_000 }, async (listener) => {
    const before = await refused(t, listener, 'handshake_timeout');
    const socket = await opened(listener === 'grpc' ? t.cp.grpcPort : t.cp.adminPort);
    const done = closed(socket);
    expect(await decides(t)).toBe(true);
    expect(await done).toBe('');
    await expect.poll(() => refused(t, listener, 'handshake_timeout'), { timeout: 5000 }).toBe(before + 1);
  });

  it('answers 408 to headers sent a byte at a time on the admin API (over its TLS), and counts it; admin calls go on', { timeout: 30_000 }, async () => {
    const before = await refused(t, 'admin', 'request_timeout');
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: t.cp.adminPort, ca: t.cp.trustBundlePem, checkServerIdentity: () => undefined }, () => resolve(s));
      s.once('error', reject);
    });
    const done = closed(socket);
    socket.write(`GET /v1/policy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t.cp.adminToken}\r\n`);
    const drip = setInterval(() => socket.writable && socket.write('X'), 200);
    expect((await adminFetch(t.cp, '/v1/policy', { headers: { authorization: `Bearer ${t.cp.adminToken}` } })).status).toBe(200);
    const got = await done;
    clearInterval(drip);
    expect(got).toMatch(/^HTTP\/1\.1 408 /);
    expect(got).toContain('request_timeout');
    expect(await refused(t, 'admin', 'request_timeout')).toBe(before + 1);
  });

  it('answers 408 to headers sent a byte at a time on the metrics port, and counts it; probes go on', { timeout: 30_000 }, async () => {
    const socket = await opened(t.cp.httpPort);
    const done = closed(socket);
    socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
    const drip = setInterval(() => socket.writable && socket.write('X'), 200);
    expect((await fetch(`http://127.0.0.1:${t.cp.httpPort}/healthz`)).status).toBe(200);
    const got = await done;
    clearInterval(drip);
    expect(got).toMatch(/^HTTP\/1\.1 408 /);
    expect(await refused(t, 'http', 'request_timeout')).toBeGreaterThanOrEqual(1);
  });
});

describe('control-plane connection cap', () => {
  let t: TestControlPlane;
  beforeAll(async () => {
    t = await startTestControlPlane(RESEARCHERS_TO_EXAMPLE, 'airlock-cp-cap-', {}, { maxConnections: '4', grpcMaxConcurrentStreams: '8' });
  });
  afterAll(() => t.close());

  it('advertises grpcMaxConcurrentStreams in its HTTP/2 settings: a client opens that many calls at once, no more', { timeout: 30_000 }, async () => {
    const session = http2Connect(`https://127.0.0.1:${t.cp.grpcPort}`, { ca: t.cp.trustBundlePem, checkServerIdentity: () => undefined });
    session.on('error', () => undefined);
    try {
      const settings = await new Promise<Settings>((resolve) => session.once('remoteSettings', resolve));
      expect(settings.maxConcurrentStreams).toBe(8);
    } finally {
      session.destroy();
    }
  });

  it.each(['grpc', 'admin', 'http'] as const)('closes %s connections past maxConnections at once and counts them; once they are gone, calls go through', { timeout: 30_000 }, async (listener) => {
    const port = { grpc: t.cp.grpcPort, admin: t.cp.adminPort, http: t.cp.httpPort }[listener];
    const held = await Promise.all(Array.from({ length: 4 }, () => opened(port)));
    const extra = Array.from({ length: 3 }, () => connect(port, '127.0.0.1'));
    expect(await Promise.all(extra.map((s) => closed(s)))).toEqual(['', '', '']);
    expect(held.every((s) => !s.destroyed)).toBe(true);
    if (listener !== 'http') expect(await refused(t, listener, 'max_connections')).toBe(3);
    for (const s of held) s.destroy();
    if (listener === 'http') {
      // The count is served on the metrics port itself: read once the held ones are gone (a read made
      // before the server saw them close is refused too, and counted).
      await expect.poll(() => refused(t, listener, 'max_connections'), { timeout: 10_000 }).toBeGreaterThanOrEqual(3);
      expect((await fetch(`http://127.0.0.1:${t.cp.httpPort}/healthz`)).status).toBe(200);
    } else if (listener === 'grpc') {
      const health = serviceClient(HEALTH_PROTO, 'grpc.health.v1.Health', t.cp.grpcPort, t.cp.trustBundlePem);
      await expect.poll(() => healthCheck(health, ''), { timeout: 10_000 }).toBe('SERVING');
      health.close();
      expect(await decides(t)).toBe(true);
    } else {
      await expect.poll(async () => (await adminFetch(t.cp, '/v1/policy', { headers: { authorization: `Bearer ${t.cp.adminToken}` } })).status, { timeout: 10_000 }).toBe(200);
    }
  });
});

describe('control-plane connections per client', () => {
  let t: TestControlPlane;
  const PLANNER = `spiffe://${TD}/ns/demo/sa/planner`;
  beforeAll(async () => {
    t = await startTestControlPlane(RESEARCHERS_TO_EXAMPLE, 'airlock-cp-per-client-', {}, { grpcMaxConnectionsPerClient: '3' });
  });
  afterAll(() => t.close());

  /** A TLS connection to the gRPC port as `id`, open once its handshake is done, or what closed it. */
  const tlsOpened = (id: Identity): Promise<{ socket: Socket; open: boolean }> =>
    new Promise((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: t.cp.grpcPort, ca: t.cp.trustBundlePem, cert: id.certPem, key: id.keyPem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
      socket.on('error', () => undefined);
      // The server closes a connection past the cap right after the handshake: wait a moment for it.
      socket.once('secureConnect', () => setTimeout(() => resolve({ socket, open: !socket.destroyed && socket.readyState === 'open' }), 300));
      socket.once('close', () => resolve({ socket, open: false }));
    });

  it('closes connections of one identity past grpcMaxConnectionsPerClient and counts them, while other identities, and a forged claim to the same one, still connect and are decided', { timeout: 60_000 }, async () => {
    const researcher = t.svid(RESEARCHER);
    const held = await Promise.all(Array.from({ length: 3 }, () => tlsOpened(researcher)));
    expect(held.map((h) => h.open)).toEqual([true, true, true]);
    // The compromised pod opens more: each is closed, and counted.
    const extra = await Promise.all(Array.from({ length: 2 }, () => tlsOpened(researcher)));
    expect(extra.map((h) => h.open)).toEqual([false, false]);
    expect(await refused(t, 'grpc', 'client_connections')).toBe(2);

    // Another sidecar is not locked out: it connects, and its calls are decided.
    const planner = openAuthorizeStream(t.cp, t.svid(PLANNER));
    try {
      const [result] = await planner.send([{ id: 1, request: AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: PLANNER, destinationHost: 'api.example.com', destinationPort: 443, method: 'GET', path: '/' }) }]);
      expect(result?.decision?.verdict).toBe(Verdict.VERDICT_DENY);
    } finally {
      planner.close();
    }

    // A certificate from another CA claiming the same identity is not counted as it: it neither
    // spends researcher's share nor is refused for it (it is counted by address, and then refused by
    // the certificate check on its first call).
    const foreignDir = mkdtempSync(join(tmpdir(), 'airlock-foreign-ca-'));
    try {
      const { csrPem, keyPem } = makeCsr();
      const forged = { certPem: CertificateAuthority.loadOrCreate(foreignDir, TD).issueSvid(csrPem, RESEARCHER, 600_000).certPem, keyPem };
      const f = await tlsOpened(forged);
      expect(f.open).toBe(true);
      f.socket.destroy();
    } finally {
      rmSync(foreignDir, { recursive: true, force: true });
    }
    expect(await refused(t, 'grpc', 'client_connections')).toBe(2);

    // Once its connections are gone, the identity is served again.
    for (const h of held) h.socket.destroy();
    await expect.poll(() => decides(t), { timeout: 10_000 }).toBe(true);
  });
});
