// node bench/threat-feeds.ts: what threat feeds cost, in-process on one core. A feed of 100,000
// domains, 100,000 IPv4 addresses, 10,000 IPv4 CIDRs (/8 to /31) and 10,000 IPv6 /48s is parsed and
// indexed (time, heap retained; and as the control plane does it, in slices: the longest event-loop stall); then the lookup per destination (a listed subdomain, an unlisted
// 4-label name, a listed and an unlisted IPv4, an IPv6 in a listed range), and the real Authorizer
// deciding an external call with the index and without (audit off). Prints one JSON line.
import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRegistry } from '@airlock/common/telemetry';
import { AuthorizeRequest, Direction } from '@airlock/proto/authorization/v1';
import { NO_AUDIT } from '../control-plane/src/audit/event.ts';
import { Authorizer } from '../control-plane/src/authz/authorize.ts';
import { createControlPlaneMetrics } from '../control-plane/src/monitoring/metrics.ts';
import { PolicyEngine } from '../control-plane/src/policy/engine.ts';
import { parsePolicyText } from '../control-plane/src/policy/load.ts';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseFeed, parseFeedInSlices } from '../control-plane/src/threat-feeds/entries.ts';
import { ThreatIndex } from '../control-plane/src/threat-feeds/threat-index.ts';

const TD = 'bench.test';
const AGENT = `spiffe://${TD}/ns/agents/sa/planner`;
const N = 200_000;

const gc = (): void => (globalThis as { gc?: () => void }).gc?.();
const lines: string[] = [];
for (let i = 0; i < 100_000; i++) lines.push(`bad-${i.toString(36)}.example${i % 7}.test`);
for (let i = 0; i < 100_000; i++) lines.push(`${10 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}.${(i * 7) & 255}`);
for (let i = 0; i < 10_000; i++) lines.push(`${100 + (i % 100)}.${i & 255}.${(i >> 8) & 255}.0/${8 + (i % 24)}`);
for (let i = 0; i < 10_000; i++) lines.push(`2001:db8:${i.toString(16)}::/48`);
const text = lines.join('\n');

gc();
const heapBefore = process.memoryUsage().heapUsed;
const t0 = performance.now();
const parsed = parseFeed(text, 'list');
const t1 = performance.now();
const index = new ThreatIndex([{ name: 'bench', version: 'sha256:0', entries: parsed.entries }]);
const t2 = performance.now();
gc();
const heapMb = (process.memoryUsage().heapUsed - heapBefore) / 1024 / 1024;

function perLookupNs(host: string): number {
  let hits = 0;
  for (let i = 0; i < 20_000; i++) if (index.match(host) !== undefined) hits++;
  const start = process.hrtime.bigint();
  for (let i = 0; i < N; i++) if (index.match(host) !== undefined) hits++;
  const ns = Number(process.hrtime.bigint() - start) / N;
  if (hits < 0) console.log(hits);
  return Math.round(ns);
}
const lookups = {
  listedSubdomainNs: perLookupNs('api.v2.bad-1a.example4.test'),
  unlistedNameNs: perLookupNs('api.v2.openai.example.com'),
  listedIpv4Ns: perLookupNs('10.0.3.21'),
  unlistedIpv4Ns: perLookupNs('93.184.216.34'),
  ipv6InRangeNs: perLookupNs('2001:db8:2a::1'),
};

// As the control plane loads it: in slices, the event loop turning between them.
const delay = monitorEventLoopDelay({ resolution: 1 });
delay.enable();
const t3 = performance.now();
await ThreatIndex.build((await parseFeedInSlices(text, 'list')).entries.length > 0 ? [{ name: 'bench', version: 'sha256:1', entries: parsed.entries }] : []);
const slicedMs = Math.round(performance.now() - t3);
delay.disable();
const longestStallMs = Math.round(delay.max / 1e6);

const engine = new PolicyEngine(
  parsePolicyText(`apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: agents }\nspec: { selector: { namespace: agents } }\n---\napiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: egress }\nspec: { from: { segments: [agents] }, to: { hosts: ['*.example.com'] }, action: allow }\n`, 'bench.yaml'),
  TD,
  1,
);
const snapshot = { engine, agents: new Map(), revoked: new Set<string>(), quarantined: new Map() };
const authorizer = (threats: ThreatIndex | undefined): Authorizer =>
  new Authorizer({ trustDomain: TD, decisions: () => ({ ...snapshot, ...(threats === undefined ? {} : { threats }) }), metrics: createControlPlaneMetrics(createRegistry('bench')), audit: NO_AUDIT });
const caller = parseSpiffeId(AGENT);
const req = AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: AGENT, destinationHost: 'api.v2.openai.example.com', destinationPort: 443, method: 'CONNECT' });
function perDecisionUs(a: Authorizer): number {
  for (let i = 0; i < 5_000; i++) a.authorize(caller, req);
  const start = process.hrtime.bigint();
  for (let i = 0; i < 50_000; i++) a.authorize(caller, req);
  return Number(process.hrtime.bigint() - start) / 50_000 / 1000;
}
const rounds: [number, number][] = [];
const [without, withFeeds] = [authorizer(undefined), authorizer(index)];
for (let r = 0; r < 5; r++) rounds.push([perDecisionUs(without), perDecisionUs(withFeeds)]);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const decisionUs = median(rounds.map((r) => r[0]));
const withFeedsUs = median(rounds.map((r) => r[1]));

console.log(
  JSON.stringify({
    entries: parsed.entries.length,
    badEntries: parsed.badLines,
    parseMs: Math.round(t1 - t0),
    indexMs: Math.round(t2 - t1),
    heapMb: Math.round(heapMb),
    slicedLoadMs: slicedMs,
    longestStallMs,
    ...lookups,
    decisionUs: Number(decisionUs.toFixed(2)),
    decisionWithFeedsUs: Number(withFeedsUs.toFixed(2)),
  }),
);
