// node --expose-gc bench/policy-engine.ts: the policy engine at fleet size, in-process. Generates
// 10,000 agents (50 namespaces), 2,000 segments (5 service accounts each, a tenth of them globs) and
// 20,000 policies (method and path rules, 1 in 20 a deny, 1 in 50 with host rules), as one YAML bundle,
// then measures: parse + validate, compile, retained heap, and the decision time (p50/p99) over
// calls between random agents. Prints one JSON line.
import { parseSpiffeId } from '@airlock/common/spiffe';
import { PolicyEngine } from '../control-plane/src/policy/engine.ts';
import { parsePolicyText } from '../control-plane/src/policy/load.ts';

const AGENTS = 10_000;
const SEGMENTS = 2_000;
const POLICIES = 20_000;
const NAMESPACES = 50;
const DECISIONS = 5_000;
const TD = 'bench.test';

// A small deterministic generator: the same bundle every run.
let seed = 42;
const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const pick = (n: number): number => Math.floor(random() * n);

const agent = (i: number): { ns: string; sa: string } => ({ ns: `ns${i % NAMESPACES}`, sa: `agent-${i}` });
const docs: string[] = [];
const perSegment = AGENTS / SEGMENTS;
for (let s = 0; s < SEGMENTS; s++) {
  const members = Array.from({ length: perSegment }, (_, k) => agent(s * perSegment + k));
  // A segment's agents are spread over namespaces: select by service account (a tenth by a glob).
  const accounts = s % 10 === 0 ? [`agent-${s * perSegment}*`] : members.map((m) => m.sa);
  docs.push(`apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: seg-${s} }\nspec:\n  selector: { namespace: "ns*", serviceAccounts: [${accounts.map((a) => JSON.stringify(a)).join(', ')}] }\n`);
}
const pairs: [number, number][] = [];
for (let p = 0; p < POLICIES; p++) {
  const [fromSeg, toSeg] = [pick(SEGMENTS), pick(SEGMENTS)];
  if (p % 50 !== 0) pairs.push([fromSeg, toSeg]);
  const from = `seg-${fromSeg}`;
  const to = p % 50 === 0 ? `hosts: ["api${p}.example.com", "*.svc${p}.example.com"]` : `segments: [seg-${toSeg}]`;
  const action = p % 20 === 0 ? 'deny' : 'allow';
  docs.push(`apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: pol-${p} }\nspec:\n  from: { segments: [${from}] }\n  to: { ${to} }\n  rules: [ { methods: [GET, POST], paths: ["/v1/*", "/api/items"] }, { methods: [DELETE], paths: ["/v1/admin/${p}"] } ]\n  action: ${action}\n`);
}
const yaml = docs.join('---\n');

global.gc?.();
const heapBefore = process.memoryUsage().heapUsed;
let t = performance.now();
const parsed = parsePolicyText(yaml, 'generated.yaml');
const parseMs = performance.now() - t;
t = performance.now();
const engine = new PolicyEngine(parsed, TD, 1);
const compileMs = performance.now() - t;
global.gc?.();
// What stays: the compiled engine and the parsed documents it came from (the store keeps both).
const retainedMb = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;

const id = (i: number): ReturnType<typeof parseSpiffeId> => {
  const a = agent(i);
  return parseSpiffeId(`spiffe://${TD}/ns/${a.ns}/sa/${a.sa}`);
};
// Half the calls follow a policy (a member of its source segment to one of its destination's),
// half go between random agents (mostly "no policy allows").
const inputs = Array.from({ length: DECISIONS }, (_, i) => {
  const pair = pairs[pick(pairs.length)] ?? [0, 0];
  const src = i % 2 === 0 ? pair[0] * perSegment + pick(perSegment) : pick(AGENTS);
  const dest = i % 2 === 0 ? pair[1] * perSegment + pick(perSegment) : pick(AGENTS);
  return { source: id(src), destination: id(dest), host: `agent-${dest}.ns${dest % NAMESPACES}`, port: 80, method: 'GET', path: '/v1/search?q=1' };
});
let allowed = 0;
for (const input of inputs.slice(0, 500)) engine.evaluate(input); // JIT warm-up
const times = new Float64Array(inputs.length);
inputs.forEach((input, i) => {
  const s = performance.now();
  if (engine.evaluate(input).allow) allowed++;
  times[i] = performance.now() - s;
});
times.sort();
const q = (f: number): number => (times[Math.min(times.length - 1, Math.floor(f * times.length))] ?? NaN) * 1000;
console.log(JSON.stringify({
  agents: AGENTS,
  segments: parsed.segments.length,
  policies: parsed.policies.length,
  yamlMb: yaml.length / 2 ** 20,
  parseMs,
  compileMs,
  retainedMb,
  decisionP50Us: q(0.5),
  decisionP99Us: q(0.99),
  decisionMeanUs: (times.reduce((a, b) => a + b, 0) / times.length) * 1000,
  allowedShare: allowed / inputs.length,
}));
