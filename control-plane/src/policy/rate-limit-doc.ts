import { enumOf, fields, HOST, nameCheck, ports, recordRefs, sourceSegments, strList, str, type Problems } from './load.ts';
import type { PolicyMode } from './types.ts';
import type { TreeMap, TreeNode } from './yaml-tree.ts';

/**
 * What one token bucket counts: `source` = each calling identity has its own; `source-destination`
 * = each (caller, destination agent or host:port) pair; `policy` = every call the same allow policy
 * admitted shares one.
 */
export type RateLimitKey = 'source' | 'source-destination' | 'policy';

/**
 * A validated RateLimit document: the calls it selects (from segments, to segments or hosts, ports;
 * no `to` = every destination) may be allowed `requests` times per `intervalMs`, in bursts of up to
 * `burst`, per key. Enforced by the control plane on OUTBOUND decisions (see authz/rate-limits).
 */
export interface RateLimitDoc {
  readonly name: string;
  readonly fromSegments: readonly string[];
  /** Both undefined: any destination. */
  readonly toSegments: readonly string[] | undefined;
  readonly toHosts: readonly string[] | undefined;
  /** Empty = any port. */
  readonly toPorts: readonly number[];
  readonly per: RateLimitKey;
  readonly requests: number;
  readonly intervalMs: number;
  /** The bucket's size: calls allowed at once after a quiet spell; `requests` unless set. */
  readonly burst: number;
  readonly mode: PolicyMode;
  readonly at: string;
}

/** Bounds that keep a bucket's arithmetic exact and its meaning sane. */
export const MAX_RATE_LIMIT_REQUESTS = 1_000_000;
const MAX_INTERVAL_MS = 24 * 3600_000;
const DURATION = /^([1-9][0-9]{0,8})(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3600_000 } as const;

/** `spec` of a RateLimit; undefined when invalid (the problems say why). */
export function rateLimitSpec(name: string | undefined, spec: TreeMap, problems: Problems): Omit<RateLimitDoc, 'name' | 'at'> | undefined {
  const before = problems.list.length;
  const s = fields(spec, 'spec.', ['from', 'to', 'per', 'requests', 'interval', 'burst', 'mode'], problems);
  const fromSegments = sourceSegments(s.get('from'), spec, problems);
  if (fromSegments === null) return undefined;
  let toSegments: string[] | undefined;
  let toHosts: string[] | undefined;
  let toPorts: number[] = [];
  const to = s.get('to');
  if (to !== undefined) {
    if (to?.kind !== 'map') {
      problems.add(to ?? spec, '"spec.to" must be a mapping with segments or hosts (and optional ports); leave it out for every destination');
      return undefined;
    }
    const t = fields(to, 'spec.to.', ['segments', 'hosts', 'ports'], problems);
    toSegments = strList(t.get('segments'), 'spec.to.segments', problems, nameCheck);
    toHosts = strList(t.get('hosts'), 'spec.to.hosts', problems, (h) => (HOST.test(h) ? undefined : `"${h}" is not a lowercase host name or "*.suffix"`));
    if ((toSegments === undefined) === (toHosts === undefined)) problems.add(to, '"spec.to" needs exactly one of "segments" or "hosts"');
    toPorts = ports(t.get('ports'), problems);
  }
  const per = enumOf<RateLimitKey>(s.get('per'), 'spec.per', ['source', 'source-destination', 'policy'], problems, spec, undefined);
  const requests = count(s.get('requests'), 'spec.requests', problems, spec, true);
  const burst = count(s.get('burst'), 'spec.burst', problems, spec, false) ?? requests;
  const intervalMs = duration(s.get('interval'), 'spec.interval', problems, spec);
  const mode = enumOf<PolicyMode>(s.get('mode'), 'spec.mode', ['enforce', 'dry-run'], problems, spec, 'enforce');
  if (name !== undefined) recordRefs(name, spec, problems, 'RateLimit');
  if (problems.list.length > before || fromSegments === undefined || per === undefined || requests === undefined || burst === undefined || intervalMs === undefined || mode === undefined) return undefined;
  return { fromSegments, toSegments, toHosts, toPorts, per, requests, intervalMs, burst, mode };
}

function count(node: TreeNode | null | undefined, field: string, problems: Problems, parent: TreeNode, required: boolean): number | undefined {
  if (node === undefined) {
    if (required) problems.add(parent, `"${field}" is required (a whole number of requests)`);
    return undefined;
  }
  const v = node?.kind === 'scalar' ? node.value : undefined;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= MAX_RATE_LIMIT_REQUESTS) return v;
  problems.add(node ?? parent, `"${field}" must be a whole number 1..${MAX_RATE_LIMIT_REQUESTS}`);
  return undefined;
}

/** `250ms`, `1s`, `5m`, `1h`: at most a day. */
function duration(node: TreeNode | null | undefined, field: string, problems: Problems, parent: TreeNode): number | undefined {
  const text = str(node, field, problems, parent);
  if (text === undefined) return undefined;
  const m = DURATION.exec(text);
  const ms = m === null ? undefined : Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  if (ms === undefined || ms > MAX_INTERVAL_MS) {
    problems.add(node, `"${field}" must be a duration like 500ms, 1s, 5m or 1h (at most 24h), got "${text.slice(0, 40)}"`);
    return undefined;
  }
  return ms;
}
