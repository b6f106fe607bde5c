// Issue 12: how long a change made through one control-plane replica takes to be in force on
// another, both on one real etcd (loopback, data in a temp dir). Two replicas in this process;
// a revocation (and a policy apply) is made through A's admin API, then B's decision path is asked
// (explain: the same decide() and in-memory state Authorize uses) in a tight loop until it follows.
// Prints p50 / p99 / max per kind against the goal (p99 ≤ 200 ms on loopback), and appends them to
// bench/README.md unless AIRLOCK_BENCH_WRITE=0. Run: node bench/replica-propagation.ts [rounds]
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch } from 'undici';
import type { RunningControlPlane } from '../control-plane/src/main.ts';
import { startEtcd } from '../test/support/etcd.ts';
import { startReplica, writeSharedCa } from '../test/support/replicas.ts';
import { publishReport } from './chain.ts';

const ROUNDS = Number(process.argv[2] ?? 100);
const TD = 'airlock.bench';
const segment = (name: string): string => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: ${name} }\nspec: { selector: { namespace: bench, serviceAccounts: [${name}] } }\n`;

const percentile = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-replicas-'));
  const etcd = await startEtcd(1);
  const replicas: RunningControlPlane[] = [];
  const rootPem = writeSharedCa(dir);
  const dispatcher = new Agent({ connect: { ca: rootPem, rejectUnauthorized: true, servername: 'localhost' } });
  try {
    for (const name of ['a', 'b']) replicas.push(await startReplica({ etcd, dir, trustDomain: TD, name: `control-plane-${name}` }));
    const [a, b] = replicas as [RunningControlPlane, RunningControlPlane];
    const admin = async (cp: RunningControlPlane, path: string, body?: unknown): Promise<Record<string, unknown>> => {
      const res = await fetch(`${cp.adminUrl}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        dispatcher,
      });
      return (await res.json()) as Record<string, unknown>;
    };
    /** Milliseconds until `followed` holds on B: from just before `change` (total), and from A's answer. */
    const propagation = async (change: () => Promise<unknown>, followed: () => Promise<boolean>, into: { total: number[]; afterAnswer: number[] }): Promise<void> => {
      const start = performance.now();
      await change();
      const answered = performance.now();
      while (!(await followed())) {
        if (performance.now() - start > 10_000) throw new Error('B did not follow within 10 s');
      }
      const end = performance.now();
      into.total.push(end - start);
      into.afterAnswer.push(end - answered);
    };

    const revocation = { total: [] as number[], afterAnswer: [] as number[] };
    const policy = { total: [] as number[], afterAnswer: [] as number[] };
    let yaml = '';
    for (let i = 0; i < ROUNDS; i++) {
      const id = `spiffe://${TD}/ns/bench/sa/agent${i}`;
      await propagation(
        () => admin(a, '/v1/agents/revoke', { identity: id }),
        async () => /revoked/.test(String((await admin(b, '/v1/explain', { from: id, to: 'api.example.com:443', method: 'GET', path: '/' })).reason)),
        revocation,
      );
      yaml += `${i === 0 ? '' : '---\n'}${segment(`s${i}`)}`;
      let applied = 0;
      await propagation(
        async () => {
          applied = Number((await admin(a, '/v1/policy/apply', { yaml })).version);
        },
        async () => Number((await admin(b, '/v1/policy')).version) >= applied,
        policy,
      );
    }
    const row = (kind: string, ms: { total: number[]; afterAnswer: number[] }): string => {
      const total = [...ms.total].sort((x, y) => x - y);
      const after = [...ms.afterAnswer].sort((x, y) => x - y);
      const p99 = percentile(total, 99);
      return `| ${kind} | ${ROUNDS} | ${percentile(total, 50).toFixed(1)} / ${p99.toFixed(1)} / ${(total.at(-1) ?? NaN).toFixed(1)} | ${percentile(after, 50).toFixed(1)} / ${percentile(after, 99).toFixed(1)} | ${p99 <= 200 ? 'met' : 'missed'} |`;
    };
    const report = [
      `### ${new Date().toISOString().slice(0, 10)} — replica propagation on etcd — ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}`,
      '',
      `Load average at start: ${loadavg().map((l) => l.toFixed(2)).join(', ')}. Two replicas in one process on one etcd 3.4 member (loopback). Time from the admin request to replica A until replica B's decision path (explain over kept-alive HTTPS, polled back to back) shows the change; it includes A's admin request and the store write.`,
      '',
      '| change made through A | rounds | from the request: p50 / p99 / max ms | after A answered: p50 / p99 ms | goal p99 ≤ 200 ms |',
      '|---|---|---|---|---|',
      row('revoke an identity → B denies it', revocation),
      row('apply a policy version → B decides with it', policy),
    ].join('\n');
    publishReport(report);
  } finally {
    for (const cp of replicas) await cp.close();
    await dispatcher.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
