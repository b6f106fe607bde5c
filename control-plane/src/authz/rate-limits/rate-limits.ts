import type { Labels } from '@airlock/common/labels';
import type { SpiffeId } from '@airlock/common/spiffe';
import type { ControlPlaneMetrics } from '../../monitoring/metrics.ts';
import { normalizeHost, type Destination, type PolicyDecision, type PolicyEngine } from '../../policy/engine.ts';
import type { RateLimitDoc, RateLimitKey } from '../../policy/rate-limit-doc.ts';
import type { PolicyMode } from '../../policy/types.ts';
import { overruled } from '../contained.ts';
import { DEFAULT_MAX_BUCKETS, TokenBuckets, type BucketSpec, type Want } from './token-buckets.ts';

const compiled = new WeakMap<readonly RateLimitDoc[], RateLimits>();

interface CompiledLimit {
  readonly name: string;
  readonly per: RateLimitKey;
  readonly enforced: boolean;
  readonly spec: BucketSpec;
  /** `5 requests per 1000ms per source`, for reasons. */
  readonly says: string;
  readonly from: ReadonlySet<string>;
  /** undefined = not to segments. */
  readonly toSegments: ReadonlySet<string> | undefined;
  /** Both empty and toSegments undefined = any destination. */
  readonly hostsExact: ReadonlySet<string> | undefined;
  readonly hostSuffixes: readonly string[];
  readonly ports: ReadonlySet<number> | undefined;
}

/** A call a RateLimit stopped (enforce) or would have (dry-run). */
export interface RateLimitHit {
  readonly name: string;
  readonly per: RateLimitKey;
  readonly mode: PolicyMode;
  readonly retryAfterMs: number;
}

/** The call as rate limits see it: who, to where, and what decided it. */
export interface LimitedCall {
  readonly source: SpiffeId;
  readonly sourceLabels?: Labels;
  readonly destination: Destination;
  readonly port: number;
}

/** What segments an identity is in: the policy engine's answer (segments are defined once, there). */
export interface SegmentsOf {
  segmentsOf(id: SpiffeId, labels?: Labels): readonly string[];
}

/** The RateLimit documents of one policy version, compiled; selection as policies select (segments, hosts, ports). */
export class RateLimits {
  readonly #limits: readonly CompiledLimit[];

  constructor(docs: readonly RateLimitDoc[]) {
    this.#limits = docs.map(compile);
  }

  /** The limits of `docs`, compiled once per policy version (the engine's list is the key). */
  static of(docs: readonly RateLimitDoc[]): RateLimits {
    let limits = compiled.get(docs);
    if (limits === undefined) {
      limits = new RateLimits(docs);
      compiled.set(docs, limits);
    }
    return limits;
  }

  get empty(): boolean {
    return this.#limits.length === 0;
  }

  /**
   * An allowed call charged one token in the bucket of every limit that selects it (each keyed by
   * its `per`), or none: a limit whose bucket is empty turns the decision into a deny (enforce), or
   * into a "would deny" that is let through (dry-run). A denied call is charged nothing.
   */
  charge(buckets: TokenBuckets, segments: SegmentsOf, call: LimitedCall, decision: PolicyDecision, now: number): { decision: PolicyDecision; hit?: RateLimitHit } {
    if (!decision.allow || this.#limits.length === 0) return { decision };
    const from = segments.segmentsOf(call.source, call.sourceLabels);
    const to = call.destination;
    const host = to.kind === 'host' ? normalizeHost(to.host) : '';
    let toSegments: readonly string[] | undefined;
    const selected: CompiledLimit[] = [];
    for (const l of this.#limits) {
      if (l.ports !== undefined && !l.ports.has(call.port)) continue;
      if (!from.some((s) => l.from.has(s))) continue;
      if (l.toSegments !== undefined) {
        if (to.kind !== 'agent') continue;
        toSegments ??= segments.segmentsOf(to.id, to.labels);
        if (!toSegments.some((s) => l.toSegments?.has(s) === true)) continue;
      } else if (l.hostsExact !== undefined) {
        if (to.kind !== 'host' || !(l.hostsExact.has(host) || l.hostSuffixes.some((x) => host.length > x.length && host.endsWith(x)))) continue;
      }
      selected.push(l);
    }
    if (selected.length === 0) return { decision };
    const destination = to.kind === 'agent' ? to.id.uri : `${host}:${call.port}`;
    const wants: Want[] = selected.map((l) => ({ key: `${l.name}\n${keyOf(l.per, call.source.uri, destination, decision.policy)}`, spec: l.spec, enforced: l.enforced }));
    const taken = buckets.take(wants, now);
    if (taken.outcome === 'taken') return { decision };
    const l = selected[taken.index] as CompiledLimit;
    const hit: RateLimitHit = { name: l.name, per: l.per, mode: l.enforced ? 'enforce' : 'dry-run', retryAfterMs: taken.retryAfterMs };
    const why = `rate limited: RateLimit "${l.name}" allows ${l.says}; retry after ${taken.retryAfterMs} ms`;
    if (taken.outcome === 'limited') return { decision: overruled(decision, why), hit };
    // Dry-run: let through and said so, unless a dry-run policy already says why it would deny.
    return { decision: decision.dryRunDeny ? decision : { ...decision, dryRunDeny: true, reason: `would deny: ${why}` }, hit };
  }
}

function keyOf(per: RateLimitKey, source: string, destination: string, policy: string): string {
  if (per === 'source') return source;
  if (per === 'source-destination') return `${source}\n${destination}`;
  return policy;
}

function compile(d: RateLimitDoc): CompiledLimit {
  const hosts = d.toHosts;
  return {
    name: d.name,
    per: d.per,
    enforced: d.mode === 'enforce',
    spec: { capacity: d.burst, refillPerMs: d.requests / d.intervalMs },
    says: `${d.requests} request${d.requests === 1 ? '' : 's'} per ${d.intervalMs} ms${d.burst === d.requests ? '' : ` (bursts of ${d.burst})`} per ${d.per}`,
    from: new Set(d.fromSegments),
    toSegments: d.toSegments === undefined ? undefined : new Set(d.toSegments),
    hostsExact: hosts === undefined ? undefined : new Set(hosts.filter((h) => !h.startsWith('*.'))),
    // "*.example.com" matches a.example.com, not example.com itself (as in policies).
    hostSuffixes: (hosts ?? []).filter((h) => h.startsWith('*.')).map((h) => h.slice(1)),
    ports: d.toPorts.length === 0 ? undefined : new Set(d.toPorts),
  };
}

/** Distinct RateLimit names used as a metric label at most; the rest are counted as `other`. */
export const MAX_LABELLED_LIMITS = 100;

/**
 * Rate limits as the Authorizer applies them: this replica's token buckets (see README "Rate
 * limits": each replica keeps its own), charged on the decisions `charge` is told to charge, counted.
 */
export class RateLimiter {
  readonly #buckets: TokenBuckets;
  readonly #metrics: ControlPlaneMetrics;
  readonly #labelled = new Set<string>();

  constructor(metrics: ControlPlaneMetrics, maxBuckets = DEFAULT_MAX_BUCKETS) {
    this.#metrics = metrics;
    this.#buckets = new TokenBuckets(maxBuckets, () => metrics.rateLimitEvictions.inc());
  }

  /** `decision` as the engine's version's RateLimits leave it; nothing is charged unless `charged`. */
  charge(engine: PolicyEngine, call: LimitedCall, decision: PolicyDecision, charged: boolean, now = Date.now()): { decision: PolicyDecision; hit?: RateLimitHit } {
    if (!charged || engine.rateLimits.length === 0) return { decision };
    const out = RateLimits.of(engine.rateLimits).charge(this.#buckets, engine, call, decision, now);
    this.#metrics.rateLimitBuckets.set(this.#buckets.size);
    if (out.hit !== undefined) this.#metrics.rateLimited.inc({ rate_limit: this.#label(out.hit.name), mode: out.hit.mode });
    return out;
  }

  #label(name: string): string {
    if (this.#labelled.has(name)) return name;
    if (this.#labelled.size >= MAX_LABELLED_LIMITS) return 'other';
    this.#labelled.add(name);
    return name;
  }
}
