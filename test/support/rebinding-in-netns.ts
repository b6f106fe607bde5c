// Runs inside a fresh network namespace (see destinations-are-checked-by-address.test.ts) where only
// loopback exists, with the cloud-metadata address and an "external" address put on it: a sidecar
// that dialled where DNS points would really reach the metadata listener here, and nothing can
// leave the machine. dnsmasq (Debian's dnsmasq-base) answers the names from a hosts file the
// script rewrites to rebind a name. Argument `system`: the sidecar resolves as it does by default
// (getaddrinfo; the test mounts a resolv.conf naming 127.0.0.1, dnsmasq on port 53); `servers`: it
// asks dnsmasq on another port through egressDnsServers. Prints one JSON line of results.
import { spawn } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeServer, listen } from '@airlock/common/net';
import { policyYaml, startMesh } from './mesh.ts';
import { freePort } from './ports.ts';
import { viaProxy } from './proxy-client.ts';
import { rawHttp } from './raw-http.ts';

export const EXTERNAL_IP = '10.77.9.1';
const METADATA_IPS = ['169.254.169.254', 'fd00:ec2::254'];

const dir = mkdtempSync(join(tmpdir(), 'airlock-rebinding-'));
const hostsFile = join(dir, 'hosts');
const names = (rebindTo: string): string =>
  [`${rebindTo} rebind.test`, `${EXTERNAL_IP} allowed.test mixed.test`, '169.254.169.254 mixed.test', 'fd00:ec2::254 v6meta.test', '127.0.0.1 loop.test'].join('\n') + '\n';
writeFileSync(hostsFile, names(EXTERNAL_IP));

// Every connection any forbidden address receives, counted: there must be none.
const forbiddenReached: string[] = [];
const forbiddenListeners = await Promise.all(
  [...METADATA_IPS, '127.0.0.1'].map(async (host) => {
    const s = createTcpServer((socket) => {
      forbiddenReached.push(host);
      socket.destroy();
    });
    await listen(s, { host, port: 80 });
    return s;
  }),
);
// The allowed external host; Connection: close, so every call makes (and checks) a new connection.
const external = createHttpServer((req, res) => res.writeHead(200, { connection: 'close' }).end(`external ok (Host ${req.headers.host ?? ''})`));
await listen(external, { host: EXTERNAL_IP, port: 80 });

const mode = process.argv[2] === 'servers' ? 'servers' : 'system';
const dnsPort = mode === 'system' ? 53 : await freePort();
// Debian puts it in /usr/sbin, which a non-root PATH may lack.
const dnsmasqBin = existsSync('/usr/sbin/dnsmasq') ? '/usr/sbin/dnsmasq' : 'dnsmasq';
const dnsmasq = spawn(dnsmasqBin, ['--keep-in-foreground', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', `--addn-hosts=${hostsFile}`, '--listen-address=127.0.0.1', '--bind-interfaces', `--port=${dnsPort}`, '--user=root', '--pid-file=', '--no-negcache', '--local-ttl=0'], { stdio: 'ignore' });
dnsmasq.on('error', (err) => {
  console.error(`cannot run dnsmasq (Debian: apt-get install dnsmasq-base): ${err.message}`);
  process.exit(1);
});
const resolver = new Resolver();
resolver.setServers([`127.0.0.1:${dnsPort}`]);
/** What dnsmasq answers now for rebind.test (bounded: it starts, or re-reads its hosts file, in well under the tries). */
async function answersFor(name: string, want: string): Promise<void> {
  for (let i = 0; i < 200; i += 1) {
    const got = await resolver.resolve4(name).catch((): string[] => []);
    if (got.includes(want)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`dnsmasq never answered ${want} for ${name}`);
}
await answersFor('rebind.test', EXTERNAL_IP);

const policy = `${policyYaml('agents', ['planner'], [])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: planner-egress }
spec:
  from: { segments: [planner] }
  to: { hosts: ["*.test"], ports: [80] }
  action: allow
`;
process.env.AIRLOCK_KEEP_TEST_DIRS = '1'; // the sidecar's log is read after it stops; removed below
// Port 80 is not served as HTTP inside a CONNECT here (--plain-http-ports elsewhere): a CONNECT to :80
// stays a tunnel, so its dial is what the check guards (the requests inside served tunnels are the GETs'
// path, checked above).
const mesh = await startMesh({ agents: ['planner'], policy, sidecarArgs: ['--plain-http-ports', '8080', ...(mode === 'system' ? [] : ['--egress-dns-servers', `127.0.0.1:${dnsPort}`])] });
let closed = false;
try {
  const port = mesh.agent('planner').outboundPort;
  const get = async (url: string): Promise<{ status: number; body: unknown }> => {
    const r = await viaProxy(port, 'GET', url);
    return { status: r.status, body: r.status === 200 ? r.text : r.json() };
  };
  const connectTo = async (target: string): Promise<{ status: number; body: unknown }> => {
    const r = await rawHttp(port, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`, { timeoutMs: 2000 }).catch(() => ({ status: 200, body: '' }));
    return { status: r.status, body: r.status === 200 ? '' : JSON.parse(r.body) as unknown };
  };
  const before = await get('http://rebind.test/latest/meta-data/');
  const connectBefore = await connectTo('allowed.test:80');
  // The rebinding: the same name now points at the metadata address.
  writeFileSync(hostsFile, names('169.254.169.254'));
  dnsmasq.kill('SIGHUP');
  await answersFor('rebind.test', '169.254.169.254');
  const after = await get('http://rebind.test/latest/meta-data/iam/security-credentials/');
  const connectAfter = await connectTo('rebind.test:80');
  const mixed = await get('http://mixed.test/');
  const v6meta = await get('http://v6meta.test/');
  const loop = await get('http://loop.test/');
  const allowed = await get('http://allowed.test/v1/models');
  // Read once the sidecar has stopped: its log is then complete.
  closed = true;
  await mesh.close();
  const log = readFileSync(join(mesh.dir, 'sidecar-planner.log'), 'utf8').split('\n').filter((l) => l.includes('external connection opened') || l.includes('tunnel opened')).map((l) => JSON.parse(l) as { msg: string; host: string; address: string });
  console.log(JSON.stringify({ before, connectBefore, after, connectAfter, mixed, v6meta, loop, allowed, forbiddenReached, dialled: log.map((l) => ({ msg: l.msg, host: l.host, address: l.address })) }));
} finally {
  if (!closed) await mesh.close();
  rmSync(mesh.dir, { recursive: true, force: true });
  dnsmasq.kill();
  await Promise.all([external, ...forbiddenListeners].map((s) => closeServer(s)));
  rmSync(dir, { recursive: true, force: true });
}
