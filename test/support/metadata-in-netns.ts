// Runs inside a fresh network namespace (see cloud-metadata-is-refused-by-name-and-address.test.ts)
// where only loopback exists, with cloud metadata addresses and an "external" address put on it: a
// sidecar that dialled them would really reach a listener here, and nothing can leave the machine.
// A loopback DNS server answers metadata.google.internal with the external address (so only a check
// by name refuses it). Prints one JSON line of results.
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { closeServer, listen } from '@airlock/common/net';
import { startLoopbackDns } from './loopback-dns.ts';
import { policyYaml, startMesh } from './mesh.ts';
import { viaProxy } from './proxy-client.ts';

const EXTERNAL_IP = '10.77.9.1';
// Alibaba Cloud's metadata service, AWS ECS task credentials, EKS Pod Identity.
const METADATA_IPS = ['100.100.100.200', '169.254.170.2', '169.254.170.23'];

const reached: string[] = [];
const listeners = await Promise.all(
  METADATA_IPS.map(async (host) => {
    const s = createTcpServer((socket) => {
      reached.push(host);
      socket.destroy();
    });
    await listen(s, { host, port: 80 });
    return s;
  }),
);
const external = createHttpServer((req, res) => {
  reached.push(`${EXTERNAL_IP} (Host ${req.headers.host ?? ''})`);
  res.writeHead(200, { connection: 'close' }).end('external ok');
});
await listen(external, { host: EXTERNAL_IP, port: 80 });
const names = ['metadata.google.internal', 'metadata', 'instance-data.ec2.internal', 'allowed.test'];
const dns = await startLoopbackDns(new Map(names.map((n) => [n, EXTERNAL_IP])));

const policy = `${policyYaml('agents', ['planner'], [])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: planner-egress }
spec:
  from: { segments: [planner] }
  to: { hosts: [${[...names, ...METADATA_IPS].join(', ')}], ports: [80] }
  action: allow
`;
// Link-local re-allowed by the operator: the metadata addresses inside it must stay refused.
const mesh = await startMesh({ agents: ['planner'], policy, sidecarArgs: ['--egress-dns-servers', `127.0.0.1:${dns.port}`, '--egress-allow-cidrs', '169.254.0.0/16', '--plain-http-ports', '8080'] });
try {
  const port = mesh.agent('planner').outboundPort;
  const results: Record<string, { status: number; body: unknown }> = {};
  for (const host of ['metadata.google.internal', 'METADATA.Google.Internal', 'metadata', 'instance-data.ec2.internal', ...METADATA_IPS, '1684301000', 'allowed.test']) {
    const r = await viaProxy(port, 'GET', `http://${host}/latest/meta-data/`);
    results[host] = { status: r.status, body: r.status === 200 ? r.text : r.json() };
  }
  console.log(JSON.stringify({ results, reached }));
} finally {
  await mesh.close();
  dns.close();
  await Promise.all([external, ...listeners].map((s) => closeServer(s)));
}
