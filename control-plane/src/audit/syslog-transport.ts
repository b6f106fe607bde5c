import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import type { AuditTransport } from './spooled-sink.ts';

export interface SyslogTransportOptions {
  readonly host: string;
  readonly port: number;
  /** PEM CA bundle the collector's certificate must chain to (default: the system's); its name must be `serverName`. */
  readonly caFile?: string;
  /** Client certificate and key, for a collector that asks for one (PEM). */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** The name the collector's certificate must carry (and SNI); default: host. */
  readonly serverName?: string;
  /** The sent events kept to send again after a reconnect: what a collector may have lost unwritten. */
  readonly resendEvents: number;
  readonly connectTimeoutMs?: number;
}

/** Facility 10, security/authorization messages (RFC 5424 §6.2.1). */
const FACILITY = 10;
const SEVERITY: Readonly<Record<string, number>> = { refusal: 4, admin: 5 };
const NIL = '-';

/** An RFC 5424 header field: printable US-ASCII without spaces, at most `max` octets, or NILVALUE. */
function headerField(value: unknown, max: number): string {
  const s = typeof value === 'string' ? value.replace(/[^\x21-\x7e]/g, '').slice(0, max) : '';
  return s === '' ? NIL : s;
}

/**
 * One audit event as an RFC 5424 message: HOSTNAME the replica, APP-NAME `airlock`, MSGID the
 * event's kind, MSG its JSON line (UTF-8, as written to stdout; its `id` identifies it across resends).
 */
export function syslogMessage(json: string): string {
  let e: Record<string, unknown> = {};
  try {
    e = JSON.parse(json) as Record<string, unknown>;
  } catch {
    // Sent as it is, with NILVALUE headers: never dropped for its shape.
  }
  const severity = e.kind === 'decision' ? (e.verdict === 'deny' ? 5 : 6) : (SEVERITY[String(e.kind)] ?? 6);
  return `<${FACILITY * 8 + severity}>1 ${headerField(e.time, 64)} ${headerField(e.replica, 255)} airlock ${process.pid} ${headerField(e.kind, 32)} - ${json}`;
}

/** RFC 5425 octet-counting framing: `MSG-LEN SP SYSLOG-MSG`. */
export function syslogFrame(json: string): string {
  const msg = syslogMessage(json);
  return `${Buffer.byteLength(msg)} ${msg}`;
}

/**
 * Syslog over TLS (RFC 5425) to one collector. Such a collector acknowledges nothing: a batch is
 * "delivered" once the kernel took it, and a collector that dies may lose what it had read but not
 * written yet. So the last `resendEvents` events sent are kept, and every new connection sends them
 * again before the next batch: a collector's crash loses nothing it had received within that many
 * events; the receiver sees some events twice and deduplicates by their `id`.
 */
export function syslogTransport(o: SyslogTransportOptions): AuditTransport & { close(): void } {
  let socket: TLSSocket | undefined;
  let sent: string[] = [];

  const open = (): Promise<TLSSocket> =>
    new Promise((resolve, reject) => {
      // Read at each connection: rotated certificates are used from the next one.
      const s = connect({
        host: o.host,
        port: o.port,
        // SNI carries names only (RFC 6066): an IP address is checked against the certificate's IP SANs.
        ...(o.serverName === undefined && isIP(o.host) !== 0 ? {} : { servername: o.serverName ?? o.host }),
        ...(o.caFile === undefined ? {} : { ca: readFileSync(o.caFile) }),
        ...(o.certFile === undefined ? {} : { cert: readFileSync(o.certFile) }),
        ...(o.keyFile === undefined ? {} : { key: readFileSync(o.keyFile) }),
        // TLS 1.2 (RFC 5425's): in TLS 1.3 the client counts itself connected before the collector has
        // checked its client certificate (or its lack of one), so events written then would count as
        // delivered and be discarded by a collector refusing it; in TLS 1.2 that refusal fails the
        // handshake (a collector checking after the handshake is waited for below).
        minVersion: 'TLSv1.2',
        maxVersion: 'TLSv1.2',
        // Verified before a byte of an event is written: an unknown collector gets nothing.
        rejectUnauthorized: true,
        timeout: o.connectTimeoutMs ?? 10_000,
      });
      const fail = (err: Error): void => {
        s.destroy();
        reject(err);
      };
      s.once('error', fail);
      s.once('timeout', () => fail(new Error('the syslog collector did not answer in time')));
      const started = Date.now();
      s.once('secureConnect', () => {
        s.setTimeout(0);
        // A collector that asked for a client certificate (shared signature algorithms come from its
        // request) may check it only after the handshake and hang up (rsyslog does): what was written
        // meanwhile would count as delivered and be discarded. So nothing is written before the
        // connection has stayed open about as long as the handshake took (a few round trips).
        const settleMs = s.getSharedSigalgs().length > 0 ? Math.min(2000, Math.max(50, 2 * (Date.now() - started))) : 0;
        const hungUp = (): void => fail(new Error('the syslog collector hung up after the handshake: does it refuse the client certificate (auditSyslogCertFile), or its absence?'));
        // The collector sends nothing; reading notices its end (a hang-up, a crash, a restart).
        s.on('data', () => undefined);
        s.once('close', hungUp);
        s.once('end', hungUp);
        setTimeout(() => {
          s.off('close', hungUp);
          s.off('end', hungUp);
          if (s.destroyed) return;
          s.off('error', fail);
          // Errors end the connection; the next batch opens another (and resends).
          s.on('error', () => s.destroy());
          s.on('end', () => s.destroy());
          s.on('close', () => {
            if (socket === s) socket = undefined;
          });
          s.setKeepAlive(true, 30_000);
          resolve(s);
        }, settleMs);
      });
    });

  const write = (s: TLSSocket, frames: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const onClose = (): void => reject(new Error('the syslog collector closed the connection'));
      s.once('close', onClose);
      s.write(frames, (err) => {
        s.off('close', onClose);
        if (err) reject(err);
        else resolve();
      });
    });

  return {
    name: 'syslog',
    async send(lines) {
      let s = socket;
      let frames = '';
      if (s === undefined || s.destroyed) {
        s = await open();
        socket = s;
        frames = sent.join('');
      }
      const batch = lines.map(syslogFrame);
      frames += batch.join('');
      try {
        await write(s, frames);
      } catch (err) {
        s.destroy();
        throw err;
      }
      sent = sent.concat(batch);
      if (sent.length > o.resendEvents) sent = sent.slice(sent.length - o.resendEvents);
    },
    close() {
      const s = socket;
      socket = undefined;
      s?.end(() => s.destroy());
    },
  };
}
