import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { KeyAndCert } from '../../sidecar/src/testing/certs.ts';

export const RSYSLOGD = '/usr/sbin/rsyslogd';

export interface Rsyslog {
  readonly port: number;
  /** What it wrote: one RFC 5424 line per message of APP-NAME airlock. */
  lines(): string[];
  /** What it printed (run in the foreground, its own errors go to stderr: a failed TLS handshake …). */
  internal(): string;
  /** SIGSTOP: it reads nothing more (what is sent meanwhile waits in its socket). */
  pause(): void;
  /** SIGKILL: a crash, what it had not written is lost. Resolves once it is gone. */
  kill(): Promise<void>;
  /** Starts it again, on the same port, appending to the same file. */
  restart(): Promise<void>;
}

/**
 * Debian's rsyslogd (packages rsyslog, rsyslog-gnutls), started by the test: its own config, pid
 * file and work directory in `dir`, an imtcp input with TLS (gtls driver, server certificate `server`;
 * with `requireClientCertificate`, a client certificate chaining to `caPem` is required) on 127.0.0.1:`port`, writing airlock's messages to `dir`/received.log
 * in RFC 5424 (RSYSLOG_SyslogProtocol23Format). Resolves once it accepts connections.
 */
export async function startRsyslog(dir: string, port: number, server: KeyAndCert, caPem: string, o: { requireClientCertificate?: boolean } = {}): Promise<Rsyslog> {
  if (!existsSync(RSYSLOGD)) throw new Error(`rsyslogd is not installed at ${RSYSLOGD}: apt-get install rsyslog rsyslog-gnutls (.ci/run does)`);
  mkdirSync(join(dir, 'work'), { recursive: true });
  writeFileSync(join(dir, 'ca.pem'), caPem);
  writeFileSync(join(dir, 'server.pem'), server.certPem);
  writeFileSync(join(dir, 'server.key'), server.keyPem, { mode: 0o600 });
  const out = join(dir, 'received.log');
  writeFileSync(join(dir, 'rsyslog.conf'), `
global(workDirectory="${join(dir, 'work')}" maxMessageSize="64k"
       defaultNetstreamDriverCAFile="${join(dir, 'ca.pem')}"
       defaultNetstreamDriverCertFile="${join(dir, 'server.pem')}"
       defaultNetstreamDriverKeyFile="${join(dir, 'server.key')}")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="${o.requireClientCertificate === true ? 'x509/certvalid' : 'anon'}")
input(type="imtcp" address="127.0.0.1" port="${port}")
if $app-name == "airlock" then {
  action(type="omfile" file="${out}" template="RSYSLOG_SyslogProtocol23Format")
}
`);
  let child: ChildProcess | undefined;
  let stderr = '';
  const start = async (): Promise<void> => {
    const c = spawn(RSYSLOGD, ['-n', '-f', join(dir, 'rsyslog.conf'), '-i', join(dir, 'rsyslogd.pid')], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    c.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-100_000)));
    for (let i = 0; ; i++) {
      if (c.exitCode !== null || i > 300) {
        c.kill('SIGKILL');
        throw new Error(`rsyslogd did not start: ${stderr}`);
      }
      if (await accepts(port)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await start();
  return {
    port,
    lines: () => (existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter((l) => l !== '') : []),
    internal: () => stderr,
    pause: () => void child?.kill('SIGSTOP'),
    kill: async () => {
      const c = child;
      if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await gone;
    },
    restart: start,
  };
}

/** Whether something listens on 127.0.0.1:`port` (a TCP connect, closed at once). */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
