// Issue 16 item 1, the control plane's side: its gRPC, admin API, metrics and webhook listeners hold limits.
// A client that opens TLS and says nothing, one that sends its headers a byte at a time, and a flood
// of connections are each cut (in seconds, not Node's two minutes) and counted, while sidecars'
// calls and probes go on.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as http2Connect, type Settings } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEALTH_PROTO, healthCheck, serviceClient } from './support/grpc-health.ts';
import { adminFetch, openAuthorizeStream, RESEARCHER, RESEARCHERS_TO_EXAMPLE, startTestControlPlane, TD, type Identity, type TestControlPlane } from '../control-plane/src/testing/test-control-plane.ts';
import { AuthorizeRequest, Direction, Verdict } from '@airlock/proto/authorization/v1';
import { CertificateAuthority } from '../control-plane/src/ca/ca.ts';
import { makeCsr } from '../control-plane/src/ca/test-csr.ts';

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

/** Settings turning the injection webhook on (its limits are its own: 64 connections, 5 s for headers and for the handshake). */
function injectionFlags(): Record<string, string> {
  const file = join(mkdtempSync(join(tmpdir(), 'airlock-cp-webhook-')), 'injection.yaml');
  writeFileSync(file, `image: ghcr.io/airlock-dev/airlock:0.1.0\ncontrolPlane: 127.0.0.1:15012\ntrustDomain: ${TD}\n`);
  return { injectionListen: '127.0.0.1:0', injectionConfigFile: file };
}

/** A legitimate AdmissionReview of a pod CREATE, as the API server posts it: the control case on the webhook. */
function admitsAPod(t: TestControlPlane): Promise<{ status: number; allowed: unknown }> {
  const uid = 'c5ed6c1a-1f3e-4a55-9f5b-1d0e0e0e0e16';
  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'researcher-0', namespace: 'agents' }, spec: { serviceAccountName: 'researcher', containers: [{ name: 'agent', image: 'agent:1' }] } };
  const body = JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid, kind: { group: '', version: 'v1', kind: 'Pod' }, resource: { group: '', version: 'v1', resource: 'pods' }, namespace: 'agents', operation: 'CREATE', userInfo: { username: 'system:admin' }, object: pod } });
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: t.cp.injectionPort, path: '/inject', method: 'POST', headers: { 'content-type': 'application/json' }, ca: t.cp.trustBundlePem, checkServerIdentity: () => undefined, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, allowed: (JSON.parse(text) as { response?: { uid?: string; allowed?: unknown } }).response?.allowed }));
    });
    req.on('error', reject);
    req.end(body);
  });
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
    t = await startTestControlPlane(RESEARCHERS_TO_EXAMPLE, 'airlock-cp-limits-', {}, { headersTimeout: '1s', tlsHandshakeTimeout: '1s', ...injectionFlags() });
  });
  afterAll(() => t.close());

  it.each(['grpc', 'admin', 'webhook'] as const)('cuts a client that opens the %s port and never finishes its TLS handshake, and counts it', { timeout: 30_000 }, async (listener) => {
    const before = await refused(t, listener, 'handshake_timeout');
    const socket = await opened({ grpc: t.cp.grpcPort, admin: t.cp.adminPort, webhook: t.cp.injectionPort ?? 0 }[listener]);
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

  it('answers 408 to headers sent a byte at a time on the injection webhook (over its TLS) within its 5 s, and counts it; admission reviews go on', { timeout: 30_000 }, async () => {
    const before = await refused(t, 'webhook', 'request_timeout');
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: t.cp.injectionPort ?? 0, ca: t.cp.trustBundlePem, checkServerIdentity: () => undefined }, () => resolve(s));
      s.once('error', reject);
    });
    const done = closed(socket);
    socket.write('POST /inject HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n');
    const drip = setInterval(() => socket.writable && socket.write('X'), 200);
    expect(await admitsAPod(t)).toEqual({ status: 200, allowed: true });
    const got = await done;
    clearInterval(drip);
    expect(got).toMatch(/^HTTP\/1\.1 408 /);
    expect(got).toContain('request_timeout');
    expect(await refused(t, 'webhook', 'request_timeout')).toBe(before + 1);
    expect(await admitsAPod(t)).toEqual({ status: 200, allowed: true });
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
    t = await startTestControlPlane(RESEARCHERS_TO_EXAMPLE, 'airlock-cp-cap-', {}, { maxConnections: '4', grpcMaxConcurrentStreams: '8', ...injectionFlags() });
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

  it('closes webhook connections past its 64 at once and counts them; once they are gone, an AdmissionReview is answered', { timeout: 30_000 }, async () => {
    const port = t.cp.injectionPort ?? 0;
    const before = await refused(t, 'webhook', 'max_connections');
    const held = await Promise.all(Array.from({ length: 64 }, () => opened(port)));
    const extra = Array.from({ length: 3 }, () => connect(port, '127.0.0.1'));
    expect(await Promise.all(extra.map((s) => closed(s)))).toEqual(['', '', '']);
    // Closed by the cap, not by the handshake timeout the held ones are subject to as well.
    expect(await refused(t, 'webhook', 'max_connections')).toBe(before + 3);
    for (const s of held) s.destroy();
    await expect.poll(async () => (await admitsAPod(t).catch(() => ({ status: 0, allowed: undefined }))).status, { timeout: 10_000 }).toBe(200);
    expect(await admitsAPod(t)).toEqual({ status: 200, allowed: true });
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
  const tlsOpened = (id: Identity, localAddress = '127.0.0.1'): Promise<{ socket: Socket; open: boolean }> =>
    new Promise((resolve) => {
      const socket = tlsConnect({ socket: connect({ host: '127.0.0.1', port: t.cp.grpcPort, localAddress }), ca: t.cp.trustBundlePem, cert: id.certPem, key: id.keyPem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
      socket.on('error', () => undefined);
      // The server closes a connection past the cap right after the handshake: wait a moment for it.
      socket.once('secureConnect', () => setTimeout(() => resolve({ socket, open: !socket.destroyed && socket.readyState === 'open' }), 300));
      socket.once('close', () => resolve({ socket, open: false }));
    });

  it('closes connections of one pod past grpcMaxConnectionsPerClient and counts them, while another pod of its identity, other identities, and a forged claim to the same one, still connect and are decided', { timeout: 60_000 }, async () => {
    const researcher = t.svid(RESEARCHER);
    const held = await Promise.all(Array.from({ length: 3 }, () => tlsOpened(researcher)));
    expect(held.map((h) => h.open)).toEqual([true, true, true]);
    // The compromised pod opens more: each is closed, and counted.
    const extra = await Promise.all(Array.from({ length: 2 }, () => tlsOpened(researcher)));
    expect(extra.map((h) => h.open)).toEqual([false, false]);
    expect(await refused(t, 'grpc', 'client_connections')).toBe(2);

    // Another pod of the same service account (same SPIFFE ID, another address) has a share of its own.
    const sibling = await tlsOpened(researcher, '127.0.0.2');
    expect(sibling.open).toBe(true);
    sibling.socket.destroy();

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
