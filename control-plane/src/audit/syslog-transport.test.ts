// The syslog transport against real TLS sockets on loopback: octet-counted RFC 5424 frames, a client
// certificate when asked for, and no event ever written to a collector it does not trust (another
// CA, the right CA but another name, an expired certificate, no TLS at all): they stay spooled.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:tls';
import { createRootLogger } from '@airlock/common/logging';
import { createRegistry } from '@airlock/common/telemetry';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestCa, type KeyAndCert, type TestCa } from '../../../sidecar/src/testing/certs.ts';
import { until } from '../testing/audit-collector.ts';
import { createAuditSinkMetrics, SpooledAuditSink } from './spooled-sink.ts';
import { syslogFrame, syslogMessage, syslogTransport, type SyslogTransportOptions } from './syslog-transport.ts';

/** Splits RFC 5425 octet-counted frames (MSG-LEN SP SYSLOG-MSG …), counting octets, not characters. */
function frames(bytes: Buffer): string[] {
  const out: string[] = [];
  let at = 0;
  while (at < bytes.length) {
    const sp = bytes.indexOf(0x20, at);
    const len = Number(bytes.subarray(at, sp).toString('ascii'));
    if (!Number.isInteger(len) || len <= 0) throw new Error(`not a frame at ${at}`);
    out.push(bytes.subarray(sp + 1, sp + 1 + len).toString('utf8'));
    at = sp + 1 + len;
  }
  return out;
}

const event = (i: number, extra: Record<string, unknown> = {}): string => JSON.stringify({ schemaVersion: 1, id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, time: '2026-12-04T12:00:00.000Z', replica: 'cp-0', kind: 'decision', verdict: 'allow', ...extra });

describe('syslog messages', () => {
  it('count octets, not characters, in the frame, and keep the JSON whole as MSG', () => {
    const json = event(1, { path: '/caf\u00e9/\u{1f512}' });
    const frame = syslogFrame(json);
    const [len, ...rest] = frame.split(' ');
    const msg = rest.join(' ');
    expect(Number(len)).toBe(Buffer.byteLength(msg));
    expect(Number(len)).not.toBe(msg.length);
    expect(frames(Buffer.from(frame + frame))).toEqual([msg, msg]);
    expect(msg).toBe(`<86>1 2026-12-04T12:00:00.000Z cp-0 airlock ${process.pid} decision - ${json}`);
  });

  it('keep header fields printable ASCII without spaces (NILVALUE when nothing is left), and rank severity by kind', () => {
    const msg = (e: Record<string, unknown>): string => syslogMessage(JSON.stringify(e));
    expect(msg({ replica: 'cp 0\u00e9\n', kind: 'admin', time: 'x y' })).toMatch(/^<85>1 xy cp0 airlock \d+ admin - /);
    expect(msg({})).toMatch(/^<86>1 - - airlock \d+ - - \{\}$/);
    expect(msg({ kind: 'decision', verdict: 'deny' })).toMatch(/^<85>1 /);
    expect(msg({ kind: 'refusal' })).toMatch(/^<84>1 /);
    expect(syslogMessage('not json')).toMatch(/^<86>1 - - airlock \d+ - - not json$/);
  });
});

describe('the syslog transport', () => {
  let dir: string;
  let ca: TestCa;
  const servers: (Server | TcpServer)[] = [];
  const sinks: SpooledAuditSink[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-syslog-'));
    ca = createTestCa('SIEM CA');
    writeFileSync(join(dir, 'ca.pem'), ca.certPem);
  });
  afterEach(async () => {
    for (const s of sinks.splice(0)) await s.close();
    for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  /** A TLS collector on loopback: what it decrypted, and how many connections it saw. */
  async function collector(cert: KeyAndCert, clientCa?: TestCa): Promise<{ port: number; received: () => Buffer; connections: () => number }> {
    const chunks: Buffer[] = [];
    let connections = 0;
    const server = createServer({ cert: cert.certPem, key: cert.keyPem, ...(clientCa === undefined ? {} : { requestCert: true, rejectUnauthorized: true, ca: clientCa.certPem }) }, (s) => {
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('error', () => undefined);
    });
    server.on('connection', () => connections++);
    server.on('tlsClientError', () => undefined);
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const address = server.address();
    return { port: typeof address === 'object' && address !== null ? address.port : 0, received: () => Buffer.concat(chunks), connections: () => connections };
  }

  function sink(port: number, o: Partial<SyslogTransportOptions> = {}): { sink: SpooledAuditSink; metric: (name: string) => Promise<number> } {
    const registry = createRegistry('t');
    const s = new SpooledAuditSink({
      transport: syslogTransport({ host: '127.0.0.1', port, caFile: join(dir, 'ca.pem'), resendEvents: 100, ...('serverName' in o ? {} : { serverName: 'siem.test' }), ...o }),
      spoolDir: join(dir, `spool-${port}`),
      spoolMaxBytes: 1024 * 1024,
      full: 'drop-oldest',
      metrics: createAuditSinkMetrics(registry),
      log: createRootLogger({ process: 't', level: 'silent' }),
      minBackoffMs: 10,
      maxBackoffMs: 50,
      flushMs: 10,
    });
    sinks.push(s);
    return { sink: s, metric: async (name) => (await registry.getSingleMetric(name)?.get())?.values.reduce((n, v) => n + v.value, 0) ?? 0 };
  }

  it('delivers every event as one octet-counted frame, with a client certificate when the collector asks for one', async () => {
    const clientCa = createTestCa('Airlock client CA');
    const client = clientCa.issue({ uris: ['spiffe://airlock.test/ns/airlock-system/sa/airlock-control-plane'] });
    writeFileSync(join(dir, 'client.pem'), client.certPem);
    writeFileSync(join(dir, 'client.key'), client.keyPem);
    const c = await collector(ca.issue({ dnsNames: ['siem.test'] }), clientCa);
    const { sink: s, metric } = sink(c.port, { certFile: join(dir, 'client.pem'), keyFile: join(dir, 'client.key') });
    for (let i = 0; i < 50; i++) s.submit(event(i));
    await until('all received', () => frames(c.received()).length === 50);
    expect(frames(c.received()).map((m) => m.slice(m.indexOf(' - ') + 3))).toEqual(Array.from({ length: 50 }, (_, i) => event(i)));
    expect(await metric('airlock_audit_events_delivered_total')).toBe(50);
  });

  it('speaks TLS 1.2 even to a collector offering 1.3: a refusal of the client certificate then fails the handshake itself', async () => {
    const protocols: (string | null)[] = [];
    const c = await collector(ca.issue({ dnsNames: ['siem.test'] }));
    const server = servers.at(-1) as Server;
    server.on('secureConnection', (sock) => protocols.push(sock.getProtocol()));
    const transport = syslogTransport({ host: '127.0.0.1', port: c.port, serverName: 'siem.test', caFile: join(dir, 'ca.pem'), resendEvents: 10 });
    await transport.send([event(1)]);
    transport.close();
    expect(protocols).toEqual(['TLSv1.2']);
  });

  it('verifies a collector dialled by IP address against its IP SANs, sending no IP as SNI (RFC 6066)', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error & { code?: string }): void => void warnings.push(w.code ?? w.message);
    process.on('warning', onWarning);
    try {
      const c = await collector(ca.issue({ ips: ['127.0.0.1'] }));
      const { sink: s } = sink(c.port, { serverName: undefined });
      s.submit(event(1));
      await until('received', () => frames(c.received()).length === 1);
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings).toEqual([]);
  });

  it('without a client certificate the collector accepts (none, or one of another CA), delivers nothing: the events stay spooled', async () => {
    const c = await collector(ca.issue({ dnsNames: ['siem.test'] }), createTestCa('Airlock client CA'));
    const client = createTestCa('Another client CA').issue({ uris: ['spiffe://airlock.test/ns/airlock-system/sa/airlock-control-plane'] });
    writeFileSync(join(dir, 'client.pem'), client.certPem);
    writeFileSync(join(dir, 'client.key'), client.keyPem);
    for (const o of [{}, { certFile: join(dir, 'client.pem'), keyFile: join(dir, 'client.key') }]) {
      const { sink: s, metric } = sink(c.port, o);
      for (let i = 0; i < 5; i++) s.submit(event(i));
      const before = c.connections();
      // (Wrongly) counted delivered, or refused and retried.
      await until('retried', async () => c.connections() >= before + 2 || (await metric('airlock_audit_events_delivered_total')) > 0);
      expect(c.received().length).toBe(0);
      expect(await metric('airlock_audit_events_delivered_total')).toBe(0);
      await s.close();
    }
  });

  it.each([
    ['a certificate of another CA', (): KeyAndCert => createTestCa('Impostor CA').issue({ dnsNames: ['siem.test'] })],
    ['a certificate of the right CA for another name', (): KeyAndCert => ca.issue({ dnsNames: ['other.test'] })],
    ['an expired certificate of the right CA', (): KeyAndCert => ca.issue({ dnsNames: ['siem.test'], ttlMs: -60_000 })],
  ])('never writes an event to a collector with %s: they stay spooled, counted', async (_name, cert) => {
    const c = await collector(cert());
    const { sink: s, metric } = sink(c.port);
    for (let i = 0; i < 5; i++) s.submit(event(i));
    // Refused and retried (or, wrongly, received).
    await until('retried', () => c.connections() >= 2 || c.received().length > 0);
    expect(c.received().length).toBe(0);
    expect(await metric('airlock_audit_events_delivered_total')).toBe(0);
    await until('spooled', async () => (await metric('airlock_audit_spool_bytes')) > 0);
    expect(await metric('airlock_audit_events_dropped_total')).toBe(0);
  });

  it('never writes an event in clear text to a listener that does not speak TLS', async () => {
    const raw: Buffer[] = [];
    let connections = 0;
    const server = createTcpServer((sock) => {
      connections++;
      sock.on('data', (d: Buffer) => raw.push(d));
      sock.on('error', () => undefined);
      // Answers as a plain syslog receiver would: nothing, then hangs up.
      setTimeout(() => sock.destroy(), 20);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const address = server.address();
    const { metric, sink: s } = sink(typeof address === 'object' && address !== null ? address.port : 0, { connectTimeoutMs: 200 });
    for (let i = 0; i < 5; i++) s.submit(event(i));
    await until('retried', () => connections >= 2);
    expect(Buffer.concat(raw).toString('latin1')).not.toMatch(/airlock|schemaVersion|00000000-0000/);
    expect(await metric('airlock_audit_events_delivered_total')).toBe(0);
  });
});
