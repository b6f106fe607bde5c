// Runs inside a fresh network namespace (see forbidden-egress-stays-in-netns.test.ts), where only
// loopback exists: a bug that dialed out could reach nothing. Prints one JSON line of results.
import { createServer } from 'node:http';
import { networkInterfaces } from 'node:os';
import { connect } from 'node:net';
import { closeServer, listen } from '@airlock/common/net';
import { policyYaml, startMesh } from './mesh.ts';
import { freePort } from './ports.ts';
import { viaProxy } from './proxy-client.ts';

const interfaces = Object.keys(networkInterfaces());
const allowedPort = await freePort();
const allowedServer = createServer((_req, res) => res.end('external ok'));
await listen(allowedServer, { host: '127.0.0.1', port: allowedPort });

const policy = `${policyYaml('agents', ['planner'], [])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: planner-egress }
spec:
  from: { segments: [planner] }
  to: { hosts: ["localhost"], ports: [${allowedPort}] }
  action: allow
`;
// The allowed "external host" is on loopback, which the sidecar refuses unless the operator allows it.
const mesh = await startMesh({ agents: ['planner'], policy, sidecarArgs: ['--egress-allow-cidrs', '127.0.0.0/8,::1/128'] });
try {
  const planner = mesh.agent('planner');
  const metadata = await viaProxy(planner.outboundPort, 'GET', 'http://169.254.169.254/latest/meta-data/iam/security-credentials/');
  const publicHost = await viaProxy(planner.outboundPort, 'GET', 'http://api.example.com/v1/models');
  const connectStatus = await new Promise<string>((resolve, reject) => {
    const socket = connect(planner.outboundPort, '127.0.0.1', () => {
      socket.write('CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n');
    });
    socket.once('data', (d: Buffer) => {
      resolve(d.toString('utf8').split('\r\n')[0] ?? '');
      socket.destroy();
    });
    socket.on('error', reject);
  });
  const allowed = await viaProxy(planner.outboundPort, 'GET', `http://localhost:${allowedPort}/ok`);
  console.log(JSON.stringify({
    interfaces,
    metadata: { status: metadata.status, body: metadata.json() },
    publicHost: { status: publicHost.status, body: publicHost.json() },
    connectStatus,
    allowed: { status: allowed.status, text: allowed.text },
  }));
} finally {
  await mesh.close();
  await closeServer(allowedServer);
}
