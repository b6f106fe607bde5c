// node bench/mcp-chain.ts: an MCP `tools/call` through both sidecars (wrk → planner's sidecar →
// mTLS → researcher's sidecar → a minimal MCP Streamable-HTTP app, bench/mcp-app.ts), in one run:
//   direct       wrk → the app
//   stub-unread  the chain, authorization stubbed, the body sent as application/octet-stream (the
//                sidecars pass it through unread)
//   stub         the chain, authorization stubbed, the JSON-RPC body read by both sidecars
//   plain        real decisions (stream transport), a policy without MCP rules (POST /mcp allowed)
//   mcp          real decisions, an MCP rule allowing tool `transfer`, no argument rules
//   mcp-asks     the same, the ingress asking the control plane for every call instead of admitting
//                on the egress decision's ticket (bench/round-trip-sidecar.ts): two decisions per call,
//                as with argument rules, which get no ticket, so that args ÷ mcp-asks is the rule alone
//   args         real decisions, the same rule with argument rules (amount 0..100, currency one of [USD])
// at 1 and 16 connections, AIRLOCK_BENCH_MCP_REPS (3) repetitions with the variants' order rotated,
// every process started once and kept for the run (each real variant has its own control plane:
// the control plane parses arguments only when some rule looks at them). Medians per point; the
// ratios to stub are taken within each repetition. CPU per call from /proc. Pinned as run.ts
// (servers on CPU 0, wrk on CPU 1). Run by run.ts; alone: AIRLOCK_BENCH_WRITE=0 to only print.
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseMcpMessage } from '../sidecar/src/mcp/read-request.ts';
import { policyYaml } from '../test/support/mesh.ts';
import { CLIENT_CPU, SERVER_CPU, counter, cpuSeconds, publishReport, startApp, startControlPlane, startSidecars, wrk, type ControlPlane, type Sidecar, type WrkResult } from './chain.ts';

const DURATION = process.env.AIRLOCK_BENCH_MCP_DURATION ?? '5s';
const WARMUP = process.env.AIRLOCK_BENCH_MCP_WARMUP ?? '2s';
const CONNECTIONS = (process.env.AIRLOCK_BENCH_MCP_CONNECTIONS ?? '1,16').split(',').map(Number);
const REPS = Number(process.env.AIRLOCK_BENCH_MCP_REPS ?? '3');
const LUA = join(import.meta.dirname, 'wrk-mcp.lua');
const TARGET = 'http://researcher.bench/mcp';
const JSON_TYPE = 'application/json';
const UNREAD_TYPE = 'application/octet-stream';
/** The call every variant makes (`"id":0` is replaced per request by bench/wrk-mcp.lua). */
const CALL = '{"jsonrpc":"2.0","id":0,"method":"tools/call","params":{"name":"transfer","arguments":{"amount":50,"currency":"USD","to":"acct-42"}}}';
/** The same call over the argument rule's maximum: the args variant must refuse it. */
const OVER_LIMIT = CALL.replace('"amount":50', '"amount":500');

type PolicyKind = 'plain' | 'mcp' | 'args';
const RULES: Record<PolicyKind, string> = {
  plain: '{ methods: [POST], paths: [/mcp] }',
  mcp: '{ methods: [POST], paths: [/mcp], mcp: { tools: [transfer] } }',
  args: '{ methods: [POST], paths: [/mcp], mcp: { tools: [transfer], arguments: [ { path: amount, min: 0, max: 100 }, { path: currency, oneOf: [USD] } ] } }',
};

function policy(kind: PolicyKind): string {
  const segments = policyYaml('bench', ['planner', 'researcher'], []);
  return `${segments}---\napiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: planner-mcp-${kind} }\nspec:\n  from: { segments: [planner] }\n  to: { segments: [researcher] }\n  rules: [ ${RULES[kind]} ]\n  action: allow\n`;
}

interface Variant {
  readonly name: string;
  readonly contentType: string;
  /** The control plane's policy; undefined for the stubbed chain (its control plane only issues identities). */
  readonly policy?: PolicyKind;
  readonly direct?: boolean;
  /** The ingress asks for every call (no ticket admission). */
  readonly asks?: boolean;
}

const VARIANTS: readonly Variant[] = [
  { name: 'direct', contentType: JSON_TYPE, direct: true },
  { name: 'stub-unread', contentType: UNREAD_TYPE },
  { name: 'stub', contentType: JSON_TYPE },
  { name: 'plain', contentType: JSON_TYPE, policy: 'plain' },
  { name: 'mcp', contentType: JSON_TYPE, policy: 'mcp' },
  { name: 'mcp-asks', contentType: JSON_TYPE, policy: 'mcp', asks: true },
  { name: 'args', contentType: JSON_TYPE, policy: 'args' },
];

/** One point of one repetition. */
interface Point extends WrkResult {
  /** CPU of both sidecars per call, µs (NaN for direct). */
  readonly sidecarsUs: number;
  /** The control plane's CPU per call, µs (NaN without real decisions). */
  readonly cpUs: number;
  readonly decisionsPerCall: number;
}

/** A chain kept for the whole run: its sidecars, and the control plane it decides with. */
interface Chain {
  readonly cp: ControlPlane;
  readonly planner: Sidecar;
  readonly researcher: Sidecar;
}

const median = (xs: readonly number[]): number => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
};

/**
 * What reading this call's body costs a sidecar in CPU, in-process and free of the chain's
 * scheduling noise: parseMcpMessage (UTF-8, JSON.parse, the duplicate-key scan, the bounded
 * arguments re-serialized), µs per call by process.cpuUsage, median of 5 rounds of 50,000.
 */
function parseCostUs(): number {
  const body = Buffer.from(CALL);
  const rounds: number[] = [];
  for (let r = 0; r < 6; r++) {
    const start = process.cpuUsage();
    for (let i = 0; i < 50_000; i++) parseMcpMessage(body);
    const used = process.cpuUsage(start);
    if (r > 0) rounds.push((used.user + used.system) / 50_000); // the first round warms up
  }
  return median(rounds);
}

/** One POST through the planner's sidecar as an HTTP proxy: the JSON-RPC answer. */
function postThroughProxy(port: number, body: string, contentType: string): Promise<{ status: number; json: { result?: unknown; error?: { code?: number; message?: string } } }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: TARGET, headers: { host: 'researcher.bench', 'content-type': contentType, accept: 'application/json, text/event-stream' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as { result?: unknown; error?: { code?: number; message?: string } } });
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Before measuring: the call is allowed, and (args) the argument rule refuses a call over its maximum. */
async function preflight(v: Variant, chain: Chain): Promise<void> {
  const ok = await postThroughProxy(chain.planner.outbound, CALL, v.contentType);
  if (ok.status !== 200 || ok.json.result === undefined) throw new Error(`${v.name}: the call was not allowed: ${ok.status} ${JSON.stringify(ok.json).slice(0, 300)}`);
  if (v.policy === 'args') {
    const denied = await postThroughProxy(chain.planner.outbound, OVER_LIMIT, v.contentType);
    if (denied.json.error?.code !== -32050) throw new Error(`args: amount 500 was not refused by the argument rule: ${JSON.stringify(denied.json).slice(0, 300)}`);
  }
}

async function measure(v: Variant, appPort: number, chain: Chain | undefined, c: number, duration: string): Promise<Point> {
  const env = { AIRLOCK_BENCH_TARGET: chain === undefined ? '/mcp' : TARGET, AIRLOCK_BENCH_BODY: CALL, AIRLOCK_BENCH_CONTENT_TYPE: v.contentType };
  const url = chain === undefined ? `http://127.0.0.1:${appPort}/` : `http://127.0.0.1:${chain.planner.outbound}/`;
  if (chain === undefined) {
    const r = await wrk(url, c, duration, false, { script: LUA, env });
    return { ...r, sidecarsUs: NaN, cpUs: NaN, decisionsPerCall: NaN };
  }
  const cpMetrics = `http://127.0.0.1:${chain.cp.httpPort}/metrics`;
  const ingressMetrics = `http://127.0.0.1:${chain.researcher.admin}/metrics`;
  const sidecarsCpu = (): number => cpuSeconds(chain.planner.pid) + cpuSeconds(chain.researcher.pid);
  const before = { sidecars: sidecarsCpu(), cp: cpuSeconds(chain.cp.pid), decisions: await counter(cpMetrics, 'airlock_authz_decisions_total'), calls: await counter(ingressMetrics, 'airlock_sidecar_requests_total') };
  const r = await wrk(url, c, duration, true, { script: LUA, env });
  const after = { sidecars: sidecarsCpu(), cp: cpuSeconds(chain.cp.pid) };
  // The calls the ingress served over the point (wrk's count leaves out those in flight at its end).
  const calls = (await counter(ingressMetrics, 'airlock_sidecar_requests_total')) - before.calls;
  const decisions = (await counter(cpMetrics, 'airlock_authz_decisions_total')) - before.decisions;
  const real = v.policy !== undefined;
  return {
    ...r,
    sidecarsUs: ((after.sidecars - before.sidecars) * 1e6) / calls,
    cpUs: real ? ((after.cp - before.cp) * 1e6) / calls : NaN,
    decisionsPerCall: real ? decisions / calls : NaN,
  };
}

const f = (x: number, d = 0): string => (Number.isNaN(x) ? '—' : x.toFixed(d));
const signed = (x: number, d = 2): string => (Number.isNaN(x) ? '—' : `${x < 0 ? '−' : '+'}${Math.abs(x).toFixed(d)}`);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-mcp-'));
  const stops: (() => Promise<void>)[] = [];
  const loadAtStart = loadavg().map((l) => l.toFixed(2)).join(', ');
  /** variant/connections → one Point per repetition. */
  const points = new Map<string, Point[]>();
  try {
    const app = await startApp('mcp-app.ts');
    stops.push(() => app.stop());
    const chains = new Map<string, Chain>();
    for (const v of VARIANTS) {
      if (v.direct === true || v.name === 'stub-unread') continue; // stub-unread uses stub's chain
      const cpDir = join(dir, v.name);
      mkdirSync(cpDir);
      const cp = await startControlPlane(cpDir, {}, policy(v.policy ?? 'plain'));
      stops.push(() => cp.stop());
      const { planner, researcher } = await startSidecars(dir, cp, app.port, v.policy === undefined ? 'stub' : v.asks === true ? 'stream-round-trip' : 'stream', {}, v.name);
      stops.push(() => planner.stop(), () => researcher.stop());
      chains.set(v.name, { cp, planner, researcher });
    }
    const chainOf = (v: Variant): Chain | undefined => (v.direct === true ? undefined : chains.get(v.name === 'stub-unread' ? 'stub' : v.name));
    for (const v of VARIANTS) {
      const chain = chainOf(v);
      if (chain !== undefined) await preflight(v, chain);
    }
    for (let rep = 0; rep < REPS; rep++) {
      // Rotated, so that no variant always runs first (right after a restart of the load) or last.
      const order = VARIANTS.map((_, i) => VARIANTS[(i + rep) % VARIANTS.length] as Variant);
      for (const v of order) {
        const chain = chainOf(v);
        await measure(v, app.port, chain, 16, WARMUP);
        for (const c of CONNECTIONS) {
          const p = await measure(v, app.port, chain, c, DURATION);
          const key = `${v.name}/${c}`;
          points.set(key, [...(points.get(key) ?? []), p]);
          console.log(`rep ${rep + 1} ${v.name} c=${c}: ${p.rps.toFixed(0)} req/s, p50/p99 ${p.p50ms.toFixed(2)} / ${p.p99ms.toFixed(2)} ms, sidecars ${f(p.sidecarsUs)} µs/call, control plane ${f(p.cpUs)} µs/call, ${f(p.decisionsPerCall, 2)} decisions/call, errors ${p.errors}`);
        }
      }
    }
  } finally {
    for (const stop of stops.reverse()) await stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const loadAtEnd = loadavg().map((l) => l.toFixed(2)).join(', ');
  const parseUs = parseCostUs();

  const at = (name: string, c: number): Point[] => points.get(`${name}/${c}`) ?? [];
  /** Median over repetitions of a per-repetition comparison of two variants (same repetition). */
  const paired = (a: string, b: string, c: number, g: (x: Point, y: Point) => number): number => median(at(a, c).map((x, i) => {
    const y = at(b, c)[i];
    return y === undefined ? NaN : g(x, y);
  }));
  const rows: string[] = [];
  for (const c of CONNECTIONS) {
    for (const v of VARIANTS) {
      const ps = at(v.name, c);
      if (ps.length === 0) continue;
      const m = (k: keyof Point): number => median(ps.map((p) => p[k]));
      const toStub = v.direct === true ? NaN : paired(v.name, 'stub', c, (x, y) => x.rps / y.rps);
      const added = paired(v.name, 'direct', c, (x, y) => x.p50ms - y.p50ms);
      const errors = ps.reduce((s, p) => s + p.errors, 0);
      rows.push(`| ${c} | ${v.name} | ${m('rps').toFixed(0)} | ${m('p50ms').toFixed(2)} / ${m('p99ms').toFixed(2)} | ${v.direct === true ? '—' : signed(added)} | ${v.direct === true ? '—' : toStub.toFixed(2)} | ${f(m('sidecarsUs'))} | ${f(m('cpUs'))} | ${f(m('decisionsPerCall'), 2)} | ${errors} |`);
    }
  }
  const costs: string[] = [];
  for (const c of CONNECTIONS) {
    const ratio = (a: string, b: string): string => paired(a, b, c, (x, y) => x.rps / y.rps).toFixed(2);
    const dp50 = (a: string, b: string): string => signed(paired(a, b, c, (x, y) => x.p50ms - y.p50ms));
    const dUs = (a: string, b: string, k: 'sidecarsUs' | 'cpUs'): string => signed(paired(a, b, c, (x, y) => x[k] - y[k]), 0);
    costs.push(`${c} connection${c === 1 ? '' : 's'}: reading the body (stub ÷ stub-unread) ${ratio('stub', 'stub-unread')}× req/s, p50 ${dp50('stub', 'stub-unread')} ms, both sidecars ${dUs('stub', 'stub-unread', 'sidecarsUs')} µs CPU per call; MCP rules (mcp ÷ plain) ${ratio('mcp', 'plain')}×, p50 ${dp50('mcp', 'plain')} ms, control plane ${dUs('mcp', 'plain', 'cpUs')} µs per call; the argument rule (args ÷ mcp) ${ratio('args', 'mcp')}×, p50 ${dp50('args', 'mcp')} ms, control plane ${dUs('args', 'mcp', 'cpUs')} µs and sidecars ${dUs('args', 'mcp', 'sidecarsUs')} µs per call, of which the ingress's own decision (no ticket; mcp-asks ÷ mcp) ${ratio('mcp-asks', 'mcp')}×, p50 ${dp50('mcp-asks', 'mcp')} ms, control plane ${dUs('mcp-asks', 'mcp', 'cpUs')} µs, and judging the arguments (args ÷ mcp-asks) ${ratio('args', 'mcp-asks')}×, p50 ${dp50('args', 'mcp-asks')} ms, control plane ${dUs('args', 'mcp-asks', 'cpUs')} µs per call.`);
  }
  const report = [
    `### MCP tools/call with central authorization (bench/mcp-chain.ts), ${new Date().toISOString().slice(0, 16)}Z — ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.versions.node}`,
    '',
    `Load average at start ${loadAtStart}, at the end ${loadAtEnd} (a machine shared with other sessions: compare rows within this run). Medians of ${REPS} repetitions (variants rotated in each), ${DURATION} per point after a ${WARMUP} warm-up at 16 connections; app, control planes and sidecars on CPU ${SERVER_CPU}, wrk on CPU ${CLIENT_CPU}. The call: \`${CALL}\` (${Buffer.byteLength(CALL)} bytes, each request its own id). Decisions on the stream transport (the default); × stub and the costs are ratios and differences within each repetition, then their median. CPU per call from /proc over the point, divided by the calls the ingress served.`,
    '',
    '| connections | chain | req/s | p50 / p99 ms | added p50 ms (vs direct) | × stub | both sidecars CPU µs per call | control plane CPU µs per call | decisions per call | errors |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    ...costs.map((x) => `- ${x}`),
    `- In-process (this process, after the chains stopped): a sidecar's parse of this body (parseMcpMessage: JSON.parse, duplicate-key scan, arguments bounded and re-serialized) costs ${parseUs.toFixed(1)} µs of CPU per call; both sidecars parse it.`,
  ].join('\n');
  publishReport(report);
}

await main();
