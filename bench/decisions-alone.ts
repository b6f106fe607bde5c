// node bench/decisions-alone.ts [seconds]: the control plane's decisions/s on its one core (CPU 0),
// tickets issued, without the chains of `npm run bench` before it. Registers researcher (as its
// sidecar would, with an address never dialled) so that planner → researcher.bench is an allowed
// mesh call that gets a ticket, then runs bench/decisions-load.ts on CPU 1 (1,024 checks in flight
// on one AuthorizeStream). Prints its JSON line, with the control plane's CPU per decision.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { adminPost } from '../cli/src/admin-client.ts';
import { oneControlPlane } from '../sidecar/src/controlplane/control-plane-pool.ts';
import { JoinTokenSigner } from '../sidecar/src/identity/certificate-signer.ts';
import { newKeyAndCsr } from '../sidecar/src/identity/key-and-csr.ts';
import { CLIENT_CPU, TRUST_DOMAIN, adminCredentials, run, startControlPlane } from './chain.ts';

const seconds = process.argv[2] ?? '8';
const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-decisions-'));
const cp = await startControlPlane(dir);
try {
  const creds = adminCredentials(cp);
  const token = async (name: string): Promise<string> => ((await adminPost(creds, '/v1/join-tokens', { identity: `spiffe://${TRUST_DOMAIN}/ns/bench/sa/${name}` })) as { token: string }).token;
  const caPem = readFileSync(join(cp.dataDir, 'ca.pem'), 'utf8');
  const signer = new JoinTokenSigner({ ...oneControlPlane(`127.0.0.1:${cp.grpcPort}`), caPem, controlPlaneId: `spiffe://${TRUST_DOMAIN}/ns/airlock-system/sa/airlock-control-plane`, joinToken: await token('researcher') });
  await signer.sign({ csrPem: (await newKeyAndCsr()).csrPem, inboundAddress: '127.0.0.1:9' });
  signer.close();
  const load = await run('taskset', ['-c', CLIENT_CPU, process.execPath, join(import.meta.dirname, 'decisions-load.ts'), String(cp.grpcPort), join(cp.dataDir, 'ca.pem'), String(cp.pid), seconds], {
    env: { ...process.env, AIRLOCK_JOIN_TOKEN: await token('planner') },
    timeout: 120_000,
  });
  const r = JSON.parse(load.stdout.trim().split('\n').pop() ?? '{}') as { decisionsPerSecond: number; cpCpuSeconds: number; seconds: number };
  const cpuPerDecisionUs = (r.cpCpuSeconds * 1e6) / (r.decisionsPerSecond * r.seconds);
  console.log(JSON.stringify({ ...r, cpuPerDecisionUs, decisionsPerCpuSecond: 1e6 / cpuPerDecisionUs, load: loadavg().map((l) => Number(l.toFixed(2))) }));
} finally {
  await cp.stop();
  rmSync(dir, { recursive: true, force: true });
}
