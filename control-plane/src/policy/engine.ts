import type { Labels } from '@airlock/common/labels';
import type { SpiffeId } from '@airlock/common/spiffe';
import { normalizePath } from './path.ts';
import { globToRegExp } from './glob.ts';
import { SegmentIndex } from './segment-index.ts';
import type { PolicyDoc, PolicyDocuments } from './types.ts';

/** What a decision is about, after the caller's identity checks. */
export interface DecisionInput {
  readonly source: SpiffeId;
  /** The destination agent, when the destination is a mesh host; undefined for external hosts. */
  readonly destination: SpiffeId | undefined;
  /** The agents' labels from their attestation (see PolicyEngine.usesLabels); undefined = none. */
  readonly sourceLabels?: Labels;
  readonly destinationLabels?: Labels;
  readonly host: string;
  readonly port: number;
  readonly method: string;
  /** Raw request path (normalized here); empty for CONNECT. */
  readonly path: string;
  /** The MCP message in the body; undefined when the request is not a POST (nothing to read). */
  readonly mcp?: McpInput;
  /** The request headers the sidecar sent; undefined = none were sent (and none left out). */
  readonly headers?: HeaderInput;
}

/**
 * Request headers by lower-case name, each with every value it was sent with, and whether any
 * header was left out by the sidecar's bounds (then a name not here is unknown, not absent).
 */
export interface HeaderInput {
  readonly values: ReadonlyMap<string, readonly string[]>;
  readonly incomplete: boolean;
}

/** Builds a HeaderInput from (name, value) occurrences; names are lower-cased. */
export function headerInput(entries: Iterable<{ readonly name: string; readonly value: string }>, incomplete: boolean): HeaderInput {
  const values = new Map<string, string[]>();
  for (const { name, value } of entries) {
    const n = name.toLowerCase();
    const list = values.get(n);
    if (list === undefined) values.set(n, [value]);
    else list.push(value);
  }
  return { values, incomplete };
}

const NO_HEADERS: HeaderInput = { values: new Map(), incomplete: false };

/**
 * The MCP JSON-RPC message of a POST, as the sidecar read it, or why it could not (too large, not
 * JSON, not application/json, not a request). `tool` is the `params.name` of a `tools/call`, else ''.
 */
export type McpInput = { readonly method: string; readonly tool: string } | { readonly unreadable: string };

export interface PolicyDecision {
  readonly allow: boolean;
  /** Name of the policy that decided; empty for the default deny and refused paths. */
  readonly policy: string;
  /** Which rule of that policy matched (`rules[0]`), `*` for a policy without rules, empty when none. */
  readonly rule: string;
  /** Version of the policy set that decided (0 before any apply). */
  readonly version: number;
  readonly reason: string;
  /** A dry-run policy would have denied: the call is let through, and said so. */
  readonly dryRunDeny: boolean;
}

interface CompiledRule {
  readonly label: string;
  readonly methods: ReadonlySet<string> | undefined;
  readonly exact: ReadonlySet<string>;
  readonly prefixes: readonly string[];
  readonly anyPath: boolean;
  readonly mcp: { readonly methods: readonly RegExp[] | undefined; readonly tools: readonly RegExp[] | undefined } | undefined;
  readonly headers: readonly CompiledHeader[] | undefined;
}

/** `values` set: sent once with one of them; else `present` says whether it must be sent. */
interface CompiledHeader {
  readonly name: string;
  readonly values: ReadonlySet<string> | undefined;
  readonly present: boolean;
}

interface CompiledPolicy {
  readonly name: string;
  readonly order: number;
  readonly deny: boolean;
  readonly dryRun: boolean;
  readonly toSegments: ReadonlySet<string> | undefined;
  readonly hostsExact: ReadonlySet<string>;
  readonly hostSuffixes: readonly string[];
  readonly ports: ReadonlySet<number> | undefined;
  readonly rules: readonly CompiledRule[];
}

/**
 * Segments and policies compiled once into a lookup by source segment. Evaluation:
 * - a matching enforced deny wins;
 * - nothing allowing is a deny ("no policy allows …"), except where a dry-run allow policy covers
 *   this source and destination: then what it does not allow is let through as "would deny";
 * - an allowed call that a dry-run deny matches is let through as "would deny";
 * - otherwise the first allowing policy (in file order) names the decision.
 */
export class PolicyEngine {
  readonly trustDomain: string;
  readonly version: number;
  readonly #segments: SegmentIndex;
  readonly #bySourceSegment: ReadonlyMap<string, readonly CompiledPolicy[]>;

  constructor(docs: PolicyDocuments, trustDomain: string, version = 0) {
    this.trustDomain = trustDomain;
    this.version = version;
    this.#segments = new SegmentIndex(docs.segments);
    const index = new Map<string, CompiledPolicy[]>();
    docs.policies.forEach((doc, order) => {
      const compiled = compilePolicy(doc, order);
      for (const seg of doc.fromSegments) {
        const list = index.get(seg) ?? [];
        list.push(compiled);
        index.set(seg, list);
      }
    });
    this.#bySourceSegment = index;
  }

  static empty(trustDomain: string): PolicyEngine {
    return new PolicyEngine({ segments: [], policies: [] }, trustDomain);
  }

  /** True when a segment selects by labels: only then need callers look up agents' labels. */
  get usesLabels(): boolean {
    return this.#segments.usesLabels;
  }

  /** Names of the segments an identity (with its attested labels) belongs to. */
  segmentsOf(id: SpiffeId, labels?: Labels): string[] {
    if (id.trustDomain !== this.trustDomain) return [];
    return this.#segments.segmentsOf(id, labels);
  }

  evaluate(input: DecisionInput): PolicyDecision {
    let path: string | undefined;
    if (input.method === 'CONNECT' && input.path === '') {
      path = undefined; // a tunnel has no path: only rules without paths can match it
    } else {
      const n = normalizePath(input.path);
      if (!n.ok) return { allow: false, policy: '', rule: '', version: this.version, reason: `ambiguous path: ${n.why}`, dryRunDeny: false };
      path = n.path;
    }
    const host = normalizeHost(input.host);
    // Built only for a reason that names the call: most decisions never need it.
    const what = (): string => {
      const mcpCall = input.mcp === undefined || 'unreadable' in input.mcp ? '' : ` (MCP ${input.mcp.method}${input.mcp.tool === '' ? '' : ` ${input.mcp.tool}`})`;
      return `${input.method}${path === undefined ? '' : ` ${path}`}${mcpCall} from ${input.source.uri} to ${host}:${input.port}`;
    };
    // Looked up once, and only when a candidate names destination segments.
    let destSegments: readonly string[] | undefined;
    const dest = (): readonly string[] => (destSegments ??= input.destination === undefined ? [] : this.segmentsOf(input.destination, input.destinationLabels));

    const mcp = input.mcp;
    const mcpWhy = (): string => (mcp !== undefined && 'unreadable' in mcp ? `: the body is not a readable MCP request (${mcp.unreadable})` : '');
    const sources = this.segmentsOf(input.source, input.sourceLabels);
    let candidates: readonly CompiledPolicy[];
    if (sources.length === 1) {
      candidates = this.#bySourceSegment.get(sources[0] ?? '') ?? []; // already in file order
    } else {
      const seen = new Set<CompiledPolicy>();
      const merged: CompiledPolicy[] = [];
      for (const seg of sources) {
        for (const p of this.#bySourceSegment.get(seg) ?? []) {
          if (!seen.has(p)) {
            seen.add(p);
            merged.push(p);
          }
        }
      }
      candidates = merged.sort((a, b) => a.order - b.order);
    }

    let dryRunDeny: { p: CompiledPolicy; rule: string } | undefined;
    let allow: { p: CompiledPolicy; rule: string } | undefined;
    let dryRunScope: CompiledPolicy | undefined;
    let unreadableMattered = false;
    let headerUnknown: string | undefined;
    const headers = input.headers ?? NO_HEADERS;
    const version = this.version;
    for (const p of candidates) {
      if (!matchesDestination(p, host, input.port, dest)) continue;
      const rule = matchingRule(p, input.method, path, mcp, headers);
      const unreadable = lastMatchUnreadable;
      if (unreadable) unreadableMattered = true;
      const headerWhy = lastHeaderUnknown;
      if (headerWhy !== '') headerUnknown ??= headerWhy;
      if (rule === undefined) {
        // A dry-run allow that covers this source and destination is being rolled out: what it
        // does not allow would be denied once enforced, so it is reported but let through.
        if (p.dryRun && !p.deny) dryRunScope ??= p;
        continue;
      }
      if (p.deny && !p.dryRun) return { allow: false, policy: p.name, rule, version, reason: `policy "${p.name}" denies ${what()}${unreadable ? mcpWhy() : ''}${headerWhy === '' ? '' : `: ${headerWhy}`}`, dryRunDeny: false };
      if (p.deny) dryRunDeny ??= { p, rule };
      else allow ??= { p, rule };
    }
    // A dry-run deny only matters for a call that would otherwise pass.
    if (allow === undefined && dryRunScope === undefined) {
      return { allow: false, policy: '', rule: '', version, reason: `no policy allows ${what()}${unreadableMattered ? mcpWhy() : ''}${headerUnknown === undefined ? '' : `: ${headerUnknown}`}`, dryRunDeny: false };
    }
    if (dryRunDeny !== undefined) {
      const { p, rule } = dryRunDeny;
      return { allow: true, policy: p.name, rule, version, reason: `would deny: policy "${p.name}" denies ${what()}`, dryRunDeny: true };
    }
    if (allow !== undefined) return { allow: true, policy: allow.p.name, rule: allow.rule, version, reason: `allowed by policy "${allow.p.name}"`, dryRunDeny: false };
    const scope = dryRunScope as CompiledPolicy;
    return { allow: true, policy: scope.name, rule: '', version, reason: `would deny: no policy allows ${what()}`, dryRunDeny: true };
  }
}

/**
 * Of `tools`, those a `tools/call` by the same source to the same destination and path would be
 * allowed (a dry-run "would deny" counts as allowed: the call would be let through), in order.
 */
export function callableTools(engine: PolicyEngine, input: DecisionInput, tools: readonly string[]): string[] {
  return tools.filter((tool) => engine.evaluate({ ...input, mcp: { method: 'tools/call', tool } }).allow);
}

function matchesDestination(p: CompiledPolicy, host: string, port: number, destSegments: () => readonly string[]): boolean {
  if (p.ports !== undefined && !p.ports.has(port)) return false;
  if (p.toSegments !== undefined) {
    for (const s of destSegments()) if (p.toSegments.has(s)) return true;
    return false;
  }
  return p.hostsExact.has(host) || p.hostSuffixes.some((suffix) => host.endsWith(suffix) && host.length > suffix.length);
}

/** Set by matchingRule (a flag, not a result object: no allocation per policy tried; evaluation is synchronous). */
let lastMatchUnreadable = false;
/** Set by matchingRule: why a header condition could not be judged ('' when all could). */
let lastHeaderUnknown = '';

/**
 * The label of the first rule the request matches (`*` when the policy has no rules), or undefined;
 * sets `lastMatchUnreadable` when a rule on MCP met a body that could not be read. Such a body fails
 * closed: it never matches an allow rule on MCP and always matches a deny rule on MCP (else an
 * oversized body would slip past `deny tools: [delete_*]`).
 */
function matchingRule(p: CompiledPolicy, method: string, path: string | undefined, mcp: McpInput | undefined, headers: HeaderInput): string | undefined {
  lastMatchUnreadable = false;
  lastHeaderUnknown = '';
  if (p.rules.length === 0) return '*';
  for (const r of p.rules) {
    if (r.methods !== undefined && !r.methods.has(method)) continue;
    if (!r.anyPath) {
      if (path === undefined) continue;
      if (!r.exact.has(path) && !r.prefixes.some((prefix) => path === prefix.slice(0, -1) || path.startsWith(prefix))) continue;
    }
    if (r.headers !== undefined && !headersHold(r.headers, headers, p.deny)) continue;
    if (r.mcp !== undefined) {
      if (mcp === undefined) continue;
      if ('unreadable' in mcp) {
        lastMatchUnreadable = true;
        if (p.deny) return r.label;
        continue;
      }
      if (r.mcp.methods !== undefined && !r.mcp.methods.some((g) => g.test(mcp.method))) continue;
      if (r.mcp.tools !== undefined) {
        // `tools` constrains `tools/call` only; in a deny rule it names what is denied, so a deny of
        // some tools does not also deny `initialize` or `tools/list`.
        if (mcp.method === 'tools/call') {
          if (!r.mcp.tools.some((g) => g.test(mcp.tool))) continue;
        } else if (p.deny) {
          continue;
        }
      }
    }
    return r.label;
  }
  return undefined;
}

/**
 * Whether every header condition holds. One that cannot be judged (the header may have been left
 * out by the sidecar's bounds, or a `values` header was sent more than once, which parsers read
 * differently) fails closed: it does not hold for an allow rule and holds for a deny rule; the
 * reason is kept in `lastHeaderUnknown`.
 */
function headersHold(conditions: readonly CompiledHeader[], headers: HeaderInput, deny: boolean): boolean {
  for (const c of conditions) {
    const sent = headers.values.get(c.name);
    let unknown: string | undefined;
    let holds: boolean;
    if (sent === undefined && headers.incomplete) {
      holds = false;
      unknown = `header "${c.name}" was not sent to the control plane (the request has more headers than the sidecar sends)`;
    } else if (c.values === undefined) {
      holds = (sent !== undefined) === c.present;
    } else if (sent === undefined) {
      holds = false;
    } else if (sent.length > 1) {
      holds = false;
      unknown = `header "${c.name}" was sent ${sent.length} times`;
    } else {
      holds = c.values.has(sent[0] ?? '');
    }
    if (unknown !== undefined) {
      if (lastHeaderUnknown === '') lastHeaderUnknown = unknown;
      if (deny) continue;
      return false;
    }
    if (!holds) return false;
  }
  return true;
}

function normalizeHost(host: string): string {
  const h = host.toLowerCase();
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

function compilePolicy(p: PolicyDoc, order: number): CompiledPolicy {
  const hosts = p.toHosts ?? [];
  return {
    name: p.name,
    order,
    deny: p.action === 'deny',
    dryRun: p.mode === 'dry-run',
    toSegments: p.toSegments === undefined ? undefined : new Set(p.toSegments),
    hostsExact: new Set(hosts.filter((h) => !h.startsWith('*.'))),
    // "*.example.com" matches a.example.com and a.b.example.com, not example.com itself.
    hostSuffixes: hosts.filter((h) => h.startsWith('*.')).map((h) => h.slice(1)),
    ports: p.toPorts.length === 0 ? undefined : new Set(p.toPorts),
    rules: p.rules.map((r, i) => {
      const paths = r.paths;
      return {
        label: `rules[${i}]`,
        methods: r.methods.length === 0 ? undefined : new Set(r.methods),
        anyPath: paths.length === 0 || paths.includes('/*'),
        exact: new Set(paths.filter((x) => !x.endsWith('/*'))),
        // "/v1/search/*" is kept as "/v1/search/": it matches "/v1/search" and anything below it.
        prefixes: paths.filter((x) => x.endsWith('/*')).map((x) => x.slice(0, -1)),
        mcp: r.mcp === undefined ? undefined : {
          methods: r.mcp.methods.length === 0 ? undefined : r.mcp.methods.map(globToRegExp),
          tools: r.mcp.tools.length === 0 ? undefined : r.mcp.tools.map(globToRegExp),
        },
        headers: r.headers.length === 0 ? undefined : r.headers.map((h) => ('values' in h ? { name: h.name, values: new Set(h.values), present: true } : { name: h.name, values: undefined, present: h.present })),
      };
    }),
  };
}
