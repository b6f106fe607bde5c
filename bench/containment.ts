// node bench/containment.ts [rounds]: how fast a quarantine takes effect under continuous traffic (issue
// 15: goal ≤ 100 ms on one replica). A real mesh (bench/chain.ts: control plane, planner's and
// researcher's sidecars on the stream transport, the echo app; servers pinned to CPU 0), and here, on
// CPU 1's side, LOOPS keep-alive loops calling planner → researcher through planner's outbound proxy
// without pause. Each round quarantines researcher through the admin API (HTTPS, a new connection, as a
// CLI call makes), by identity or by its segment alternately, and takes the time from just before the
// request to the first call answered 403 `quarantined`, and to the API's answer; then releases it and
// waits for traffic to be allowed again. Prints p50 / p99 / max and appends them to bench/README.md
// unless AIRLOCK_BENCH_WRITE=0. Run by run.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminPost } from '../cli/src/admin-client.ts';
import { TRUST_DOMAIN, adminCredentials, publishReport, startApp, startControlPlane, startSidecars } from './chain.ts';

const ROUNDS = Number(process.argv[2] ?? process.env.AIRLOCK_BENCH_CONTAINMENT_ROUNDS ?? 40);
/** Concurrent callers: continuous traffic, bounded. */
const LOOPS = 4;
const TARGET = 'http://researcher.bench/v1/contain';
const RESEARCHER = `spiffe://${TRUST_DOMAIN}/ns/bench/sa/researcher`;

const percentile = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;

interface Answer {
  readonly at: number;
  readonly status: number;
  readonly quarantined: boolean;
}

/** One call through the outbound proxy (absolute-form, as an agent with HTTP_PROXY sends it). */
function call(port: number, agent: Agent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'GET', path: TARGET, headers: { host: 'researcher.bench' }, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ at: performance.now(), status: res.statusCode ?? 0, quarantined: res.statusCode === 403 && body.includes('"quarantined"') }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-containment-'));
  const stops: (() => Promise<void>)[] = [];
  const loadAtStart = loadavg().map((l) => l.toFixed(2)).join(', ');
  try {
    const app = await startApp();
    stops.push(() => app.stop());
    const cp = await startControlPlane(dir);
    stops.push(() => cp.stop());
    const { planner, researcher } = await startSidecars(dir, cp, app.port, 'stream');
    stops.push(() => planner.stop(), () => researcher.stop());
    const creds = adminCredentials(cp);

    // Continuous traffic: every answer is noted; a round looks at those after its start.
    const agent = new Agent({ keepAlive: true, maxSockets: LOOPS });
    stops.push(() => Promise.resolve(agent.destroy()));
    let answers: Answer[] = [];
    let running = true;
    let failures = 0;
    const loops = Array.from({ length: LOOPS }, async () => {
      while (running) {
        try {
          answers.push(await call(planner.outbound, agent));
        } catch {
          failures++; // a connection the sidecar closed: the next call opens another
        }
      }
    });

    const untilAllowed = async (): Promise<void> => {
      const deadline = performance.now() + 10_000;
      for (;;) {
        const since = performance.now();
        await sleep(20);
        if (answers.some((a) => a.at > since && a.status === 200)) return;
        if (performance.now() > deadline) throw new Error('traffic was not allowed again within 10 s');
      }
    };
    await untilAllowed();
    await sleep(1000); // warm: connections open, the decision stream up

    const toDenied = { identity: [] as number[], segment: [] as number[] };
    const toAnswer: number[] = [];
    const afterAnswer: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const by = round % 2 === 0 ? 'identity' : 'segment';
      const target = by === 'identity' ? { identity: RESEARCHER } : { segment: 'researcher' };
      answers = [];
      const start = performance.now();
      await adminPost(creds, '/v1/agents/quarantine', { ...target, reason: `bench round ${round}` });
      const answered = performance.now();
      let denied: Answer | undefined;
      while ((denied = answers.find((a) => a.quarantined)) === undefined) {
        if (performance.now() - start > 10_000) throw new Error('no call was denied within 10 s of the quarantine');
        await sleep(1);
      }
      toDenied[by].push(denied.at - start);
      toAnswer.push(answered - start);
      afterAnswer.push(denied.at - answered);
      await adminPost(creds, '/v1/agents/release', target);
      await untilAllowed();
    }
    running = false;
    await Promise.all(loops);

    const row = (name: string, values: number[]): string => {
      const s = [...values].sort((a, b) => a - b);
      return `| ${name} | ${s.length} | ${percentile(s, 50).toFixed(1)} | ${percentile(s, 99).toFixed(1)} | ${(s[s.length - 1] ?? NaN).toFixed(1)} |`;
    };
    const all = [...toDenied.identity, ...toDenied.segment];
    const p99 = percentile([...all].sort((a, b) => a - b), 99);
    const report = [
      `### Containment latency (bench/containment.ts), ${new Date().toISOString()}`,
      '',
      `${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, load average at start ${loadAtStart} (a machine shared with other sessions: figures vary from run to run).`,
      `One control plane (SQLite), planner → researcher through both sidecars on the stream transport, ${LOOPS} callers without pause; each round quarantines researcher through the admin API (a new HTTPS connection) and releases it after. Milliseconds from just before the request:`,
      '',
      '| quarantine | rounds | p50 ms | p99 ms | max ms |',
      '|---|---|---|---|---|',
      row('by identity: first call denied `quarantined`', toDenied.identity),
      row('by segment: first call denied `quarantined`', toDenied.segment),
      row('the admin API answered', toAnswer),
      row('first call denied, from the API\'s answer (negative: before it)', afterAnswer),
      '',
      `Goal: the first denied call ≤ 100 ms after the command on one replica: p99 ${p99.toFixed(1)} ms, ${p99 <= 100 ? 'met' : 'NOT met'}. Calls that failed at the socket (a connection closed under them): ${failures}.`,
    ].join('\n');
    publishReport(report);
  } finally {
    for (const stop of stops.reverse()) await stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
