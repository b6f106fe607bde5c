// Runs as root inside a fresh network namespace with a dummy interface (10.99.0.2/24, fd00:99::2/64;
// see transparent-mode-rules-capture-app-traffic.test.ts): installs the transparent-mode rules exactly
// as the injected init container does (`sh -c <script>`), then tries connections as an app UID and as
// the sidecar's UID. Prints one JSON line of results.
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createServer } from 'node:net';
import { listen } from '@airlock/common/net';
import { redirectScript } from '../../control-plane/src/injection/redirect-rules.ts';
import { CAPTURE_PORT, SIDECAR_UID } from '../../control-plane/src/injection/sidecar-template.ts';

const APP_UID = 1000;
const LOOPBACK_PORT = 18080;

const capture = createServer((s) => s.end('captured'));
const loopback = createServer((s) => s.end('loopback'));
await listen(capture, { host: '127.0.0.1', port: CAPTURE_PORT });
await listen(loopback, { host: '127.0.0.1', port: LOOPBACK_PORT });

const applied = spawnSync('sh', ['-c', redirectScript({ sidecarUid: SIDECAR_UID, capturePort: CAPTURE_PORT })], { encoding: 'utf8' });

// One attempt in a child process running as `uid`: tcp (connect, read the answer), syn (send the
// SYN and return: connect() emits it before it returns), udp (one datagram).
const CHILD = `
const net = require('node:net'), dgram = require('node:dgram');
const [mode, host, port] = process.argv.slice(1);
const out = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
if (mode === 'tcp') {
  const s = net.connect({ host, port: Number(port) });
  s.on('data', (d) => out({ connected: true, answer: d.toString() }));
  s.on('error', (e) => out({ connected: false, error: e.code }));
} else if (mode === 'syn') {
  const s = net.connect({ host, port: Number(port) });
  s.on('error', () => {});
  s.on('connect', () => out({ connected: true }));
  setImmediate(() => out({ sent: true }));
} else {
  const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  sock.send('x', Number(port), host, (err) => out({ sent: !err, error: err ? err.code : undefined }));
}`;

// Asynchronous: the capture and loopback servers of this process must answer meanwhile.
async function attempt(uid: number, mode: 'tcp' | 'syn' | 'udp', host: string, port: number): Promise<Record<string, unknown>> {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', CHILD, mode, host, String(port)], { uid, gid: uid, encoding: 'utf8', timeout: 10_000 });
    return JSON.parse(stdout.trim()) as Record<string, unknown>;
  } catch (err) {
    return { failed: String(err) };
  }
}

/** Packets counted by each rule of the nat chain, in order. */
function natCounters(): number[] {
  const text = execFileSync('iptables', ['-t', 'nat', '-L', 'AIRLOCK_OUTPUT', '-v', '-x', '-n'], { encoding: 'utf8' });
  return text.split('\n').slice(2).filter((l) => l.trim() !== '').map((l) => Number(l.trim().split(/\s+/)[0]));
}

const before = natCounters();
const sidecarSyn = await attempt(SIDECAR_UID, 'syn', '10.99.0.1', 80);
const afterSidecar = natCounters();
const result = {
  applied: { status: applied.status, stderr: applied.stderr },
  appToPeer: await attempt(APP_UID, 'tcp', '10.99.0.1', 80),
  appToOtherPort: await attempt(APP_UID, 'tcp', '10.99.0.1', 5432),
  appAsRootToPeer: await attempt(0, 'tcp', '10.99.0.1', 443),
  appToLoopback: await attempt(APP_UID, 'tcp', '127.0.0.1', LOOPBACK_PORT),
  sidecarSyn,
  sidecarCounters: { before, after: afterSidecar },
  appUdp: await attempt(APP_UID, 'udp', '10.99.0.1', 9999),
  appDns: await attempt(APP_UID, 'udp', '10.99.0.1', 53),
  sidecarUdp: await attempt(SIDECAR_UID, 'udp', '10.99.0.1', 9999),
  appIpv6: await attempt(APP_UID, 'tcp', 'fd00:99::1', 80),
  sidecarIpv6Udp: await attempt(SIDECAR_UID, 'udp', 'fd00:99::1', 9999),
};
capture.close();
loopback.close();
console.log(JSON.stringify(result));
