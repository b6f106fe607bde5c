// Issue 15 item 5/6: the evidence trail of a real mesh. Calls allowed and denied, a quarantine and
// a release through the CLI; then `airlock export` over the control plane's log returns exactly the
// audit events naming the agent in the window (each held to the schema), `--verify` refuses an
// edited log, and `airlock report -o json` counts what was done.
import { execFile } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditSchemaProblems } from '../control-plane/src/testing/audit-events.ts';
import { startStandardMesh } from './support/standard-mesh.ts';
import type { Mesh } from './support/mesh.ts';

const BIN = join(import.meta.dirname, '..', 'cli', 'bin', 'airlock.js');

function airlock(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

type Event = Record<string, unknown> & { kind: string; time: string; id: string };
const eventsOf = (text: string): Event[] =>
  text.split('\n').flatMap((l) => {
    if (!l.includes('"audit"')) return [];
    const a = (JSON.parse(l) as { audit?: Event }).audit;
    return a === undefined ? [] : [a];
  });
const jsonLines = (text: string): Event[] => text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Event);
/** A wait of a few ms, so that events on either side of a window edge have different times. */
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

describe('the evidence trail of a real mesh', () => {
  let mesh: Mesh;
  let log: string;
  let since: string;
  let until: string;
  let researcher: string;
  const calls = { allowed: 0, denied: 0, quarantined: 0 };

  beforeAll(async () => {
    mesh = await startStandardMesh();
    const creds = join(mesh.dir, 'admin.json');
    writeFileSync(creds, JSON.stringify(mesh.creds));
    researcher = mesh.agent('researcher').identity;
    const call = async (from: string, method: string, url: string, expected: number): Promise<void> => {
      const res = await mesh.call(from, method, url);
      expect(res.status, `${from} ${method} ${url}`).toBe(expected);
    };
    // Before the window: naming the researcher, and not exported.
    await call('planner', 'GET', 'http://researcher.agents/v1/before', 200);
    calls.allowed++;
    await tick();
    since = new Date().toISOString();
    await tick();
    await call('planner', 'GET', 'http://researcher.agents/v1/items', 200);
    await call('planner', 'POST', 'http://researcher.agents/v1/items', 200);
    calls.allowed += 2;
    await call('planner', 'DELETE', 'http://researcher.agents/v1/items', 403);
    await call('researcher', 'GET', 'http://planner.agents/v1/x', 403);
    calls.denied += 2;
    // Naming neither side of the researcher: never exported.
    await call('planner', 'POST', 'http://payments.agents/v1/charge', 200);
    calls.allowed++;
    await call('payments', 'GET', 'http://planner.agents/v1/x', 403);
    calls.denied++;
    const q = await airlock(['quarantine', researcher, '--reason', 'evidence test'], { AIRLOCK_CREDENTIALS: creds });
    expect(q.code, q.stderr).toBe(0);
    await call('planner', 'GET', 'http://researcher.agents/v1/items', 403);
    await call('researcher', 'GET', 'http://payments.agents/v1/x', 403);
    calls.quarantined += 2;
    const r = await airlock(['release', researcher], { AIRLOCK_CREDENTIALS: creds });
    expect(r.code, r.stderr).toBe(0);
    await call('planner', 'GET', 'http://researcher.agents/v1/after', 200);
    calls.allowed++;
    await tick();
    until = new Date().toISOString();
    await tick();
    // After the window.
    await call('planner', 'GET', 'http://researcher.agents/v1/later', 200);
    calls.allowed++;
    // Stopped: every event is in the log, ending with a signed checkpoint.
    await mesh.stopControlPlane();
    log = join(mesh.dir, 'control-plane.log');
  }, 120_000);
  afterAll(async () => mesh.close());

  it('exports exactly the events naming the agent in the window, in the audit schema', async () => {
    const all = eventsOf(readFileSync(log, 'utf8'));
    const expected = all.filter((e) => e.kind !== 'chain-start' && e.kind !== 'checkpoint' && e.time >= since && e.time < until && JSON.stringify(e).includes(`"${researcher}"`));
    const out = await airlock(['export', '--identity', researcher, '--since', since, '--until', until, log]);
    expect(out.code, out.stderr).toBe(0);
    const exported = jsonLines(out.stdout);
    expect(exported).toEqual(expected);
    for (const e of exported) expect(auditSchemaProblems(e), JSON.stringify(e)).toEqual([]);
    // What that is: the calls of the window both ways, the quarantine and release, the calls it denied.
    const decisions = exported.filter((e) => e.kind === 'decision');
    expect(decisions.filter((e) => e.verdict === 'allow' && e.direction === 'outbound').map((e) => `${e.method as string} ${e.path as string}`)).toEqual(['GET /v1/items', 'POST /v1/items', 'GET /v1/after']);
    expect(decisions.filter((e) => e.verdict === 'deny').map((e) => e.reason)).toEqual([expect.stringContaining('no policy') as unknown, expect.stringContaining('no policy') as unknown, 'quarantined', 'quarantined']);
    expect(exported.filter((e) => e.kind === 'admin').map((e) => [e.action, e.target])).toEqual([
      ['agent.quarantine', researcher],
      ['agent.release', researcher],
    ]);
    expect(exported.some((e) => JSON.stringify(e).includes('/v1/before') || JSON.stringify(e).includes('/v1/later') || JSON.stringify(e).includes('/v1/charge'))).toBe(false);
    expect(out.stderr).toContain(`exported ${exported.length} audit event(s)`);

    // The same from a gzipped log, from stdin, and with --verify over the intact log.
    const gz = join(mesh.dir, 'control-plane.log.gz');
    writeFileSync(gz, gzipSync(readFileSync(log)));
    expect((await airlock(['export', '--identity', researcher, '--since', since, '--until', until, gz])).stdout).toBe(out.stdout);
    const verified = await airlock(['export', '--identity', researcher, '--since', since, '--until', until, '--verify', '--trust-bundle', join(mesh.dataDir, 'trust-bundle.pem'), log]);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toBe(out.stdout);
    const verifiedGz = await airlock(['export', '--identity', researcher, '--since', since, '--until', until, '--verify', '--trust-bundle', join(mesh.dataDir, 'trust-bundle.pem'), gz]);
    expect(verifiedGz.code, verifiedGz.stderr).toBe(0);
    expect(verifiedGz.stdout).toBe(out.stdout);
  });

  it('--verify refuses an edited log, naming the first break, and writes nothing', async () => {
    const lines = readFileSync(log, 'utf8').split('\n');
    const i = lines.findIndex((l) => l.includes('"audit"') && l.includes('"verdict":"deny"') && l.includes('"reason":"quarantined"'));
    expect(i).toBeGreaterThan(0);
    lines[i] = (lines[i] ?? '').replace('"verdict":"deny"', '"verdict":"allow"');
    const edited = join(mesh.dir, 'edited.log');
    writeFileSync(edited, lines.join('\n'));
    const bundle = join(mesh.dataDir, 'trust-bundle.pem');
    const r = await airlock(['export', '--identity', researcher, '--since', since, '--verify', '--trust-bundle', bundle, edited]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('the audit trail does not verify, nothing exported');
    expect(r.stderr).toContain(`${edited}:${i + 1} `);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    // Without --verify the edit goes through: --verify is what catches it.
    expect((await airlock(['export', '--identity', researcher, '--since', since, edited])).code).toBe(0);
  });

  it('report -o json counts the calls, denials, quarantine and release', async () => {
    const r = await airlock(['report', '--since', '1h', '-o', 'json', log]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { decisions: { total: number; byDirection: Record<string, number>; denialsByClass: Record<string, number>; topDenyingPolicies: unknown[] }; quarantines: Record<string, number>; admin: { policyVersions: number[]; tokensCreated: number } };
    // Each call is decided outbound; the callee's sidecar asks again (inbound) only for an allowed
    // call that carried no ticket (README "How a call flows"): those are counted from the log.
    const denials = calls.denied + calls.quarantined;
    const all = eventsOf(readFileSync(log, 'utf8'));
    const inbound = all.filter((e) => e.kind === 'decision' && e.direction === 'inbound').length;
    expect(report.decisions.byDirection).toEqual({ 'outbound.allow': calls.allowed, 'outbound.deny': denials, ...(inbound === 0 ? {} : { 'inbound.allow': inbound }) });
    expect(report.decisions.total).toBe(calls.allowed + denials + inbound);
    expect(report.decisions.denialsByClass).toEqual({ no_policy: calls.denied, quarantined: calls.quarantined });
    expect(report.decisions.topDenyingPolicies).toEqual([{ policy: '(no policy)', denials }]);
    expect(report.quarantines).toEqual({ quarantined: 1, released: 1, revoked: 0 });
    expect(report.admin.policyVersions).toEqual([1]);
    expect(report.admin.tokensCreated).toBe(3);
    // The window: only what the export's window held.
    const windowed = JSON.parse((await airlock(['report', '--since', since, '--until', until, '-o', 'json', log])).stdout) as typeof report;
    expect(windowed.decisions.byDirection).toMatchObject({ 'outbound.allow': calls.allowed - 2, 'outbound.deny': denials });
    const table = await airlock(['report', '--since', since, log]);
    expect(table.stdout).toMatch(/quarantines\s+1 set, 1 released/);
  });

  it('refuses bad input clearly, without a stack trace', async () => {
    const sidecarLog = join(mesh.dir, 'sidecar-planner.log');
    const notGzip = join(mesh.dir, 'not-gzip.log.gz');
    writeFileSync(notGzip, readFileSync(log));
    const cases: [string[], RegExp][] = [
      [['export', '--identity', researcher, '--since', 'yesterday', log], /--since: expected an RFC 3339 time/],
      [['export', '--identity', researcher, log], /--since T is required/],
      [['export', '--since', '1h', log], /--identity ID is required/],
      [['export', '--identity', 'researcher', '--since', '1h', log], /--identity: /],
      [['export', '--identity', researcher, '--since', '1h', join(mesh.dir, 'nope.log')], /cannot read .*nope\.log: ENOENT/],
      [['export', '--identity', researcher, '--since', '1h', sidecarLog], /sidecar-planner\.log holds no audit event: is it a control plane log\?/],
      [['export', '--identity', researcher, '--since', '1h', '--verify', log], /--verify needs --trust-bundle/],
      [['export', '--identity', researcher, '--since', '1h', '--until', '2h', log], /--until .* must be after --since/],
      [['report', '--since', '1h', '-o', 'yaml', log], /-o must be table or json/],
      [['report', '--since', '1h', sidecarLog], /holds no audit event/],
      [['report', '--since', '2026-12-04T25:00:00Z', log], /--since: /],
      [['export', '--identity', researcher, '--since', '1h', notGzip], /not-gzip\.log\.gz: not a whole gzip file/],
      [['report', '--since', '1h', notGzip], /not a whole gzip file/],
    ];
    for (const [args, message] of cases) {
      const r = await airlock(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe('');
    }
  });
});

describe('airlock export and report over a log larger than their heap', () => {
  it('read it a line at a time', { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-evidence-big-'));
    try {
      // ~48 MB of decisions naming the agent (outside the window but one), read with a 32 MB heap:
      // reading the file whole would not fit.
      const file = join(dir, 'control-plane.log');
      const fd = openSync(file, 'w');
      const A = 'spiffe://e2e.test/ns/agents/sa/researcher';
      const line = (time: string, path: string): string =>
        `${JSON.stringify({ level: 30, time: Date.parse(time), msg: 'authorization decision', audit: { schemaVersion: 1, kind: 'decision', time, source: A, destination: '', host: 'example.com', port: 443, direction: 'outbound', method: 'GET', path, verdict: 'deny', mode: 'enforce', policy: '', rule: '', reason: 'no policy allows GET example.com'.padEnd(200, '.') } })}\n`;
      const chunk = line('2026-01-01T00:00:00.000Z', '/old').repeat(1000);
      for (let i = 0; i < 100; i++) writeSync(fd, chunk);
      writeSync(fd, line('2026-12-01T00:00:00.000Z', '/in-window'));
      closeSync(fd);
      const small = { NODE_OPTIONS: '--max-old-space-size=32' };
      const out = await airlock(['export', '--identity', A, '--since', '2026-11-01T00:00:00Z', file], small);
      expect(out.code, out.stderr).toBe(0);
      expect(jsonLines(out.stdout).map((e) => e.path)).toEqual(['/in-window']);
      const report = await airlock(['report', '--since', '2025-01-01T00:00:00Z', '-o', 'json', file], small);
      expect(report.code, report.stderr).toBe(0);
      expect((JSON.parse(report.stdout) as { decisions: { total: number } }).decisions.total).toBe(100_001);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
