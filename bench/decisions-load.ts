// node bench/decisions-load.ts <cp grpc port> <ca file> <control plane pid> <seconds>, with
// AIRLOCK_JOIN_TOKEN for planner's identity: the control plane's decisions/s on its one core. Run
// pinned to the other core, it holds CONCURRENCY authorizations in flight through the sidecar's own
// stream client (one long-lived AuthorizeStream, the checks of one event-loop turn in one message)
// and prints one JSON line: decisions/s, and the control plane's and its own CPU over the same window.
// AIRLOCK_BENCH_INFLIGHT sets the checks held in flight (1 = no coalescing: a round trip per check).
import { readFileSync } from 'node:fs';
import { GrpcStreamAuthorizer } from '../sidecar/src/authz/grpc-stream-authorizer.ts';
import { JoinTokenSigner } from '../sidecar/src/identity/certificate-signer.ts';
import { oneControlPlane } from '../sidecar/src/controlplane/control-plane-pool.ts';
import { newKeyAndCsr } from '../sidecar/src/identity/key-and-csr.ts';
import type { Svid } from '../sidecar/src/identity/svid.ts';
import { cpuSeconds, TRUST_DOMAIN } from './chain.ts';

const [port = '', caFile = '', cpPid = '', seconds = '8'] = process.argv.slice(2);
const CONCURRENCY = Number(process.env.AIRLOCK_BENCH_INFLIGHT ?? 1024);
if (!Number.isInteger(CONCURRENCY) || CONCURRENCY < 1 || CONCURRENCY > 100_000) {
  console.error(`decisions-load: AIRLOCK_BENCH_INFLIGHT must be an integer from 1 to 100000, got ${JSON.stringify(process.env.AIRLOCK_BENCH_INFLIGHT)}`);
  process.exit(2);
}
const WARMUP_MS = 3000;
const address = `127.0.0.1:${port}`;
const controlPlaneId = `spiffe://${TRUST_DOMAIN}/ns/airlock-system/sa/airlock-control-plane`;

const signer = new JoinTokenSigner({ ...oneControlPlane(address), caPem: readFileSync(caFile, 'utf8'), controlPlaneId, joinToken: process.env.AIRLOCK_JOIN_TOKEN ?? '' });
const { keyPem, csrPem } = await newKeyAndCsr();
// Planner only calls here; the address it registers is never dialled.
const signed = await signer.sign({ csrPem, inboundAddress: '127.0.0.1:1' });
signer.close();
const svid: Svid = { spiffeId: signed.spiffeId, certChainPem: signed.certChainPem, keyPem, trustBundlePem: signed.trustBundlePem, expiresAt: new Date(signed.expiresAtMs) };
let batches = 0;
const authorizer = new GrpcStreamAuthorizer({ address, controlPlaneId, identity: { current: () => svid, onChange: () => () => undefined }, timeoutMs: 5000, onBatch: () => batches++ });

let counting = false;
let decisions = 0;
let errors = 0;
let stop = false;
const request = { direction: 'outbound' as const, sourceId: svid.spiffeId, host: 'researcher.bench', port: 80, method: 'GET', path: '/v1/search' };
async function loop(): Promise<void> {
  while (!stop) {
    try {
      const d = await authorizer.authorize(request);
      if (counting) {
        if (d.allowed) decisions++;
        else errors++;
      }
    } catch {
      if (counting) errors++;
    }
  }
}
const loops = Array.from({ length: CONCURRENCY }, () => loop());
await new Promise((r) => setTimeout(r, WARMUP_MS));
counting = true;
batches = 0;
const cpu0 = cpuSeconds(Number(cpPid));
const self0 = process.cpuUsage();
const t0 = performance.now();
await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
const elapsed = (performance.now() - t0) / 1000;
const cpCpu = cpuSeconds(Number(cpPid)) - cpu0;
const selfCpu = process.cpuUsage(self0);
counting = false;
const counted = { decisions, errors, batches };
stop = true;
await Promise.all(loops);
authorizer.close();
console.log(JSON.stringify({ decisionsPerSecond: counted.decisions / elapsed, clientCpuSeconds: (selfCpu.user + selfCpu.system) / 1e6, cpCpuSeconds: cpCpu, seconds: elapsed, errors: counted.errors, inFlight: CONCURRENCY, meanBatch: counted.decisions / Math.max(1, counted.batches) }));
