// Issue 12: the control plane's decisions/s with one replica and with three on one etcd, on this
// machine's cores (for what it shows: on 2 cores three replicas share CPU 0 with etcd, so the figure
// says what replication costs, not how it scales on real nodes). Each replica is a CLI process
// pinned to CPU 0; each gets its own bench/decisions-load.ts (one AuthorizeStream, checks coalesced)
// pinned to CPU 1, all at once. Prints a table; appends it to bench/README.md unless
// AIRLOCK_BENCH_WRITE=0. Run: node bench/replicas-decisions.ts [seconds]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { adminPost } from '../cli/src/admin-client.ts';
import { JoinTokenSigner } from '../sidecar/src/identity/certificate-signer.ts';
import { oneControlPlane } from '../sidecar/src/controlplane/control-plane-pool.ts';
import { newKeyAndCsr } from '../sidecar/src/identity/key-and-csr.ts';
import { startEtcd } from '../test/support/etcd.ts';
import { writeSharedCa } from '../test/support/replicas.ts';
import { adminCredentials, CLIENT_CPU, publishReport, run, startControlPlane, TRUST_DOMAIN, type ControlPlane } from './chain.ts';

const SECONDS = process.argv[2] ?? '8';
const controlPlaneId = `spiffe://${TRUST_DOMAIN}/ns/airlock-system/sa/airlock-control-plane`;
const agent = (name: string): string => `spiffe://${TRUST_DOMAIN}/ns/bench/sa/${name}`;

interface Load {
  readonly decisionsPerSecond: number;
  readonly cpCpuSeconds: number;
  readonly seconds: number;
  readonly errors: number;
}

/** decisions-load against each of `replicas` at once, one load process per replica. */
async function loads(replicas: readonly ControlPlane[]): Promise<Load[]> {
  return Promise.all(
    replicas.map(async (cp) => {
      const token = ((await adminPost(adminCredentials(cp), '/v1/join-tokens', { identity: agent('planner') })) as { token: string }).token;
      const out = await run('taskset', ['-c', CLIENT_CPU, process.execPath, join(import.meta.dirname, 'decisions-load.ts'), String(cp.grpcPort), join(cp.dataDir, 'trust-bundle.pem'), String(cp.pid), SECONDS.replace(/s$/, '')], {
        env: { ...process.env, AIRLOCK_JOIN_TOKEN: token },
        timeout: 120_000,
      });
      return JSON.parse(out.stdout.trim().split('\n').pop() ?? '{}') as Load;
    }),
  );
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-replica-load-'));
  const etcd = await startEtcd(1);
  const replicas: ControlPlane[] = [];
  try {
    writeSharedCa(dir);
    const env = {
      AIRLOCK_STORE: `etcd://${etcd.endpoints.map((e) => e.replace('http://', '')).join(',')}`,
      AIRLOCK_CA_CERT_FILE: join(dir, 'tls.crt'),
      AIRLOCK_CA_KEY_FILE: join(dir, 'tls.key'),
      AIRLOCK_CA_BUNDLE_FILE: join(dir, 'ca.crt'),
    };
    for (let i = 0; i < 3; i++) replicas.push(await startControlPlane(mkdtempSync(join(dir, `replica-${i}-`)), env));
    const [first] = replicas as [ControlPlane];
    // The destination must be a registered agent (a mesh host), as in the chain: researcher joins once.
    const token = ((await adminPost(adminCredentials(first), '/v1/join-tokens', { identity: agent('researcher') })) as { token: string }).token;
    const signer = new JoinTokenSigner({ ...oneControlPlane(`127.0.0.1:${first.grpcPort}`), caPem: readFileSync(join(first.dataDir, 'trust-bundle.pem'), 'utf8'), controlPlaneId, joinToken: token });
    await signer.sign({ csrPem: (await newKeyAndCsr()).csrPem, inboundAddress: '127.0.0.1:1' });
    signer.close();

    const one = await loads([first]);
    const three = await loads(replicas);
    const sum = (ls: readonly Load[]): number => ls.reduce((a, l) => a + l.decisionsPerSecond, 0);
    const cpu = (ls: readonly Load[]): string => ls.map((l) => (l.cpCpuSeconds / l.seconds).toFixed(2)).join(' + ');
    const report = [
      `### ${new Date().toISOString().slice(0, 10)} — decisions/s with replicas on etcd — ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}`,
      '',
      `Load average at start: ${loadavg().map((l) => l.toFixed(2)).join(', ')}. Replicas (CLI processes) on CPU 0 with one etcd member; one decisions-load per replica on CPU 1 (one AuthorizeStream each, 1024 checks in flight, checks of one turn coalesced); ${SECONDS} s after a 3 s warm-up. On 2 cores the three replicas share one core: this shows what running three costs, not how it scales over nodes.`,
      '',
      '| replicas | decisions/s (sum) | per replica | control-plane CPU (cores, per replica) | errors |',
      '|---|---|---|---|---|',
      `| 1 | ${sum(one).toFixed(0)} | ${one.map((l) => l.decisionsPerSecond.toFixed(0)).join(', ')} | ${cpu(one)} | ${one.reduce((a, l) => a + l.errors, 0)} |`,
      `| 3 | ${sum(three).toFixed(0)} | ${three.map((l) => l.decisionsPerSecond.toFixed(0)).join(', ')} | ${cpu(three)} | ${three.reduce((a, l) => a + l.errors, 0)} |`,
    ].join('\n');
    publishReport(report);
  } finally {
    for (const cp of replicas) await cp.stop();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
