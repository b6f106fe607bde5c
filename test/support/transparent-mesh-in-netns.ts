// Runs as root in the peer pod's network namespace (see transparent-mode-captures-and-authorizes.test.ts;
// argv[2] is the agent pod's namespace). Starts a real control plane, the peer's app and sidecar and
// an external host here; installs the redirect rules in the agent's pod as the init container does,
// starts the agent's sidecar there (UID 2317, as injected), then has the agent's app (UID 1000) open
// direct connections. Prints one JSON line of results.
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { closeServer, listen } from '@airlock/common/net';
import { adminPost } from '../../cli/src/admin-client.ts';
import { spawnAirlock, type AirlockProcess } from '../../cli/src/demo/processes.ts';
import { redirectScript } from '../../control-plane/src/injection/redirect-rules.ts';
import { CAPTURE_PORT, SIDECAR_UID } from '../../control-plane/src/injection/sidecar-template.ts';
import { createTestCa } from '../../sidecar/src/testing/certs.ts';
import { policyYaml } from './mesh.ts';
import { POD_NET } from './pod-netns.ts';

const agentNs = process.argv[2] ?? '';
const APP_UID = 1000;
const TD = 'e2e.test';
const PLANNER = `spiffe://${TD}/ns/agents/sa/planner`;
const dir = mkdtempSync(join(tmpdir(), 'airlock-transparent-'));

// What reached the peer's app port (every connection, by source address) and the external host.
const peerConnections: string[] = [];
const peerRequests: { path: string; from: string; xfcc: string | undefined }[] = [];
const externalRequests: { host: string | undefined; from: string; tls: boolean }[] = [];
const peerApp = createHttpServer((req, res) => {
  req.resume();
  const xfcc = req.headers['x-forwarded-client-cert'];
  peerRequests.push({ path: req.url ?? '', from: req.socket.remoteAddress ?? '', xfcc: typeof xfcc === 'string' ? xfcc : undefined });
  res.end(`peer app: ${req.url ?? ''}`);
});
peerApp.on('connection', (s) => peerConnections.push(s.remoteAddress ?? ''));
const external = (tls: boolean) => (req: IncomingMessage, res: ServerResponse): void => {
  req.resume();
  externalRequests.push({ host: req.headers.host, from: req.socket.remoteAddress ?? '', tls });
  res.end(tls ? 'external tls ok' : 'external ok');
};
const ca = createTestCa('External Test CA');
const externalCert = ca.issue({ dnsNames: [POD_NET.externalName] });
const externalHttp = createHttpServer(external(false));
const externalHttps = createHttpsServer({ key: externalCert.keyPem, cert: externalCert.certPem }, external(true));
await listen(peerApp, { host: '0.0.0.0', port: POD_NET.peerAppPort });
await listen(externalHttp, { host: POD_NET.externalIp, port: 80 });
await listen(externalHttps, { host: POD_NET.externalIp, port: 443 });

// One connection from the agent's pod, as `uid`, in a child process: raw HTTP bytes, or TLS with an
// optional SNI and one GET through it. Prints {status, body} or {error}.
const CHILD = `
const net = require('node:net'), tls = require('node:tls');
const [mode, host, port, arg] = process.argv.slice(1);
const out = (o) => { console.log(JSON.stringify(o)); process.exit(0); };
let text = '';
const done = () => out(/^HTTP\\/1\\.[01] \\d{3}/.test(text) ? { status: Number(text.slice(9, 12)), body: text.slice(text.indexOf('\\r\\n\\r\\n') + 4) } : { answer: text });
if (mode === 'http') {
  const s = net.connect({ host, port: Number(port) }, () => s.write(JSON.parse(arg)));
  s.on('data', (d) => (text += d));
  s.on('end', done);
  s.on('error', (e) => out({ error: e.code }));
} else {
  const servername = arg === '' ? undefined : arg;
  const s = tls.connect({ host, port: Number(port), servername, ca: process.env.EXTERNAL_CA });
  s.on('secureConnect', () => s.write('GET /over-tls HTTP/1.1\\r\\nHost: ' + servername + '\\r\\nConnection: close\\r\\n\\r\\n'));
  s.on('data', (d) => (text += d));
  s.on('end', done);
  s.on('error', (e) => out({ error: e.code }));
}`;

async function inAgentPod(uid: number, mode: 'http' | 'tls', host: string, port: number, arg: string): Promise<Record<string, unknown>> {
  try {
    const { stdout } = await promisify(execFile)('ip', ['netns', 'exec', agentNs, 'setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, '-e', CHILD, mode, host, String(port), arg], {
      encoding: 'utf8',
      timeout: 15_000,
      env: { ...process.env, EXTERNAL_CA: ca.certPem },
    });
    return JSON.parse(stdout.trim()) as Record<string, unknown>;
  } catch (err) {
    return { failed: String(err) };
  }
}
const get = (path: string, host: string | undefined, version = '1.1'): string =>
  JSON.stringify(`GET ${path} HTTP/${version}\r\n${host === undefined ? '' : `Host: ${host}\r\n`}Connection: close\r\n\r\n`);

const policy = `${policyYaml('agents', ['planner', 'researcher'], [{ name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/allowed'] }])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: planner-egress }
spec:
  from: { segments: [planner] }
  to: { hosts: ["${POD_NET.externalName}"], ports: [80, 443] }
  action: allow
`;
writeFileSync(join(dir, 'policy.yaml'), policy);
const dataDir = join(dir, 'control-plane');
const processes: AirlockProcess[] = [];
let result: Record<string, unknown>;
try {
  // Before the rules: the agent's pod reaches the peer's app port directly (what the rules must stop).
  const beforeRules = await inAgentPod(APP_UID, 'http', POD_NET.peerIp, POD_NET.peerAppPort, get('/before-rules', 'researcher.agents'));

  const controlPlane = spawnAirlock('control-plane', ['control-plane', '--trust-domain', TD, '--data-dir', dataDir, '--grpc-listen', '0.0.0.0:15012', '--http-listen', '127.0.0.1:15014', '--admin-listen', '127.0.0.1:15013', '--policy-file', join(dir, 'policy.yaml')], { logFile: join(dir, 'control-plane.log') });
  processes.push(controlPlane);
  await controlPlane.logLine('control plane ready');
  const creds = { server: 'https://127.0.0.1:15013', token: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim(), caFile: join(dataDir, 'trust-bundle.pem') };
  const joinToken = async (sa: string): Promise<string> => ((await adminPost(creds, '/v1/join-tokens', { identity: `spiffe://${TD}/ns/agents/sa/${sa}` })) as { token: string }).token;
  const sidecarArgs = (cp: string, advertise: string): string[] => ['sidecar', '--trust-domain', TD, '--control-plane', cp, '--outbound-listen', '127.0.0.1:15001', '--inbound-listen', '0.0.0.0:15006', '--inbound-advertise', advertise, '--admin-listen', '127.0.0.1:15020', '--app-port', String(POD_NET.peerAppPort)];
  const caPem = readFileSync(join(dataDir, 'trust-bundle.pem'), 'utf8');

  const peer = spawnAirlock('sidecar researcher', sidecarArgs('127.0.0.1:15012', `${POD_NET.peerIp}:15006`), { logFile: join(dir, 'researcher.log'), env: { AIRLOCK_JOIN_TOKEN: await joinToken('researcher'), AIRLOCK_CA_PEM: caPem } });
  processes.push(peer);

  // The agent's pod: the init container's rules first, then the sidecar as injected (its UID, the capture listener).
  const rules = spawnSync('ip', ['netns', 'exec', agentNs, 'sh', '-c', redirectScript({ sidecarUid: SIDECAR_UID, capturePort: CAPTURE_PORT })], { encoding: 'utf8' });
  const agent = spawnAirlock('sidecar planner', [...sidecarArgs(`${POD_NET.peerIp}:15012`, `${POD_NET.agentIp}:15006`), '--capture-listen', `127.0.0.1:${CAPTURE_PORT}`], {
    logFile: join(dir, 'planner.log'),
    env: { AIRLOCK_JOIN_TOKEN: await joinToken('planner'), AIRLOCK_CA_PEM: caPem },
    wrap: ['ip', 'netns', 'exec', agentNs, 'setpriv', `--reuid=${SIDECAR_UID}`, `--regid=${SIDECAR_UID}`, '--clear-groups'],
  });
  processes.push(agent);
  await Promise.all([peer.logLine('holding an X.509-SVID'), agent.logLine('holding an X.509-SVID')]);
  peerConnections.length = 0;
  peerRequests.length = 0;

  const at = { peer: [POD_NET.peerIp, POD_NET.peerAppPort] as const, external: [POD_NET.externalIp, 80] as const, externalTls: [POD_NET.externalIp, 443] as const };
  result = {
    beforeRules,
    rules: { status: rules.status, stderr: rules.stderr },
    // Plain HTTP straight at the peer pod's IP: captured, judged by Host.
    meshAllowed: await inAgentPod(APP_UID, 'http', ...at.peer, get('/v1/allowed', 'researcher.agents')),
    meshForbiddenPath: await inAgentPod(APP_UID, 'http', ...at.peer, get('/v1/secrets', 'researcher.agents')),
    meshHostIsIp: await inAgentPod(APP_UID, 'http', ...at.peer, get('/v1/allowed', `${POD_NET.peerIp}:${POD_NET.peerAppPort}`)),
    meshNoHost: await inAgentPod(APP_UID, 'http', ...at.peer, get('/v1/allowed', undefined, '1.0')),
    meshAsRoot: await inAgentPod(0, 'http', ...at.peer, get('/v1/secrets', 'researcher.agents')),
    notHttp: await inAgentPod(APP_UID, 'http', ...at.peer, JSON.stringify('hello, not HTTP\r\n')),
    tlsToPeer: await inAgentPod(APP_UID, 'tls', ...at.peer, 'researcher.agents'),
    // An external host, by its IP with the name in Host or SNI.
    externalAllowed: await inAgentPod(APP_UID, 'http', ...at.external, get('/v1/models', POD_NET.externalName)),
    externalForbidden: await inAgentPod(APP_UID, 'http', ...at.external, get('/v1/models', POD_NET.forbiddenName)),
    tlsAllowed: await inAgentPod(APP_UID, 'tls', ...at.externalTls, POD_NET.externalName),
    tlsForbidden: await inAgentPod(APP_UID, 'tls', ...at.externalTls, POD_NET.forbiddenName),
    tlsNoSni: await inAgentPod(APP_UID, 'tls', ...at.externalTls, ''),
    peerConnections,
    peerRequests,
    externalRequests,
    planner: PLANNER,
  };
} catch (err) {
  result = { error: String(err) };
} finally {
  await Promise.all(processes.map((p) => p.stop()));
  await Promise.all([closeServer(peerApp), closeServer(externalHttp), closeServer(externalHttps)]);
  if (process.env.AIRLOCK_KEEP_TEST_DIRS === undefined) rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
