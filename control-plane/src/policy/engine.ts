import type { Labels } from '@airlock/common/labels';
import { meshHostOf, parseSpiffeId, type SpiffeId } from '@airlock/common/spiffe';
import type { McpArguments } from '@airlock/common/mcp-arguments';
import { ArgumentCondition } from './arguments.ts';
import { normalizePath } from './path.ts';
import { Glob } from './glob.ts';
import { SegmentIndex } from './segment-index.ts';
import type { RateLimitDoc } from './rate-limit-doc.ts';
import { compileSecretRules, type SecretRules } from './secrets.ts';
import type { SecretFinding } from '@airlock/common/secret-detectors';
import type { BaselineDoc } from './baseline-doc.ts';
import { mcpBodyScope, type McpBodyScope } from './mcp-body-scope.ts';
import type { ApprovalDoc, HeaderRuleDoc, PolicyDoc, PolicyDocuments, TlsMode, ToolChangeAction } from './types.ts';

/**
 * Where a call goes, and so which policies can apply: an agent of the mesh is judged by policies to
 * segments only, an external host by policies to hosts only. A host policy (`*.demo`) never admits a
 * call into an agent, whatever host name the caller sent: an INBOUND decision is about the receiving
 * agent, and an OUTBOUND call to a registered agent's mesh host is a call to that agent.
 */
export type Destination =
  | {
      readonly kind: 'agent';
      readonly id: SpiffeId;
      /** Its labels from its attestation (see PolicyEngine.usesLabels); undefined = none. */
      readonly labels?: Labels;
    }
  | { readonly kind: 'host'; readonly host: string };

export function toAgent(id: SpiffeId, labels?: Labels): Destination {
  return labels === undefined ? { kind: 'agent', id } : { kind: 'agent', id, labels };
}

export function toHost(host: string): Destination {
  return { kind: 'host', host };
}

/** What a decision is about, after the caller's identity checks. */
export interface DecisionInput {
  readonly source: SpiffeId;
  /** The source agent's labels from its attestation (see PolicyEngine.usesLabels); undefined = none. */
  readonly sourceLabels?: Labels;
  readonly destination: Destination;
  readonly port: number;
  readonly method: string;
  /** Raw request path (normalized here); empty for CONNECT. */
  readonly path: string;
  /** The MCP message in the body; undefined when the request is not a POST (nothing to read). */
  readonly mcp?: McpInput;
  /** The request headers the sidecar sent; undefined = none were sent (and none left out). */
  readonly headers?: HeaderInput;
  /** OUTBOUND: what the sidecar's secret and PII detectors found (detector and field); undefined = nothing. */
  readonly secretFindings?: readonly SecretFinding[];
  /** OUTBOUND to an external host: the addresses the sidecar resolved its name to and will dial (threat feeds judge them); undefined = none sent. */
  readonly destinationAddresses?: readonly string[];
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
export type McpInput = { readonly method: string; readonly tool: string; readonly arguments?: McpArguments | AnyArguments } | { readonly unreadable: string };

/**
 * The arguments of the "list" phase (filtering a `tools/list` answer): no call yet, so a tool is
 * listed when some call of it could be allowed. Allow rules' argument conditions count as met, and
 * deny rules with argument conditions do not hide the tool (they judge each call).
 */
export type AnyArguments = { readonly any: true };
export const ANY_ARGUMENTS: AnyArguments = { any: true };

/** An argument an argument rule looked at, for the audit line: the value redacted unless the policy marks it loggable. */
export interface ArgumentNote {
  readonly path: string;
  readonly value: string;
}

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
  /** The arguments the deciding rule's argument conditions looked at (or the one that failed a "no policy allows"); undefined when none. */
  readonly arguments?: readonly ArgumentNote[];
  /**
   * Set on an allowed call to an external host that an allow policy for its host and port marks
   * `tls:` (any such policy, whichever allowed: a policy's order never downgrades it); `inspect`
   * outranks `originate`. Undefined otherwise.
   */
  readonly tls?: TlsMode;
  /**
   * True when a policy judged on this call has rules on request headers: content a ticket does not
   * bind, so the destination's sidecar must ask rather than admit on a ticket.
   */
  readonly readsUnboundContent?: true;
  /** True when a policy judged on this call has rules on tool arguments: its ticket binds their digest. */
  readonly readsArguments?: true;
  /** The allowing rule says `approve: required`: the call is held until a human decides (authz/approvals). */
  readonly approval?: ApprovalDoc;
}

interface CompiledRule {
  readonly label: string;
  readonly anyMethod: boolean;
  /** The rule's methods as bits (see MethodBits): no set to look into per rule. */
  readonly methodMask: number;
  /** Its methods beyond the bits (a policy set naming more than 30 methods); undefined = none. */
  readonly otherMethods: ReadonlySet<string> | undefined;
  readonly exact: ReadonlySet<string>;
  /** Prefix rules `/x/*` kept as `/x/` (anything below) ... */
  readonly prefixes: readonly string[];
  /** ... and, at the same index, `/x` (the prefix itself). */
  readonly prefixRoots: readonly string[];
  readonly anyPath: boolean;
  readonly mcp: { readonly methods: readonly Glob[] | undefined; readonly tools: readonly Glob[] | undefined; readonly args: readonly ArgumentCondition[] | undefined } | undefined;
  readonly headers: readonly CompiledHeader[] | undefined;
  readonly approval: ApprovalDoc | undefined;
}

/** `exact` set (a `values` condition): sent once with one of those values or matching one of `globs`; else `present` says whether it must be sent. */
interface CompiledHeader {
  readonly name: string;
  readonly exact: ReadonlySet<string> | undefined;
  readonly globs: readonly Glob[];
  readonly present: boolean;
}

interface CompiledPolicy {
  readonly name: string;
  readonly order: number;
  readonly deny: boolean;
  readonly dryRun: boolean;
  /** To hosts (else to segments, which the index has already matched). */
  readonly toHosts: boolean;
  readonly hostsExact: ReadonlySet<string>;
  readonly hostSuffixes: readonly string[];
  readonly ports: ReadonlySet<number> | undefined;
  readonly rules: readonly CompiledRule[];
  readonly tls: TlsMode | undefined;
  /** The reason of the decisions it allows: built once, not per decision. */
  readonly allowReason: string;
  /** Some rule reads request headers (see PolicyDecision.readsUnboundContent). */
  readonly readsUnboundContent: boolean;
  /** Some rule reads tool arguments (see PolicyDecision.readsArguments). */
  readonly readsArguments: boolean;
}

/** A source segment's policies to hosts, filed by host: a decision looks up its destination. */
interface HostPolicies {
  /** By exact host name. */
  readonly exact: Map<string, CompiledPolicy[]>;
  /** Those naming a `*.suffix` host: tested one by one. */
  readonly suffix: CompiledPolicy[];
}

/**
 * HTTP methods as bits, numbered per policy set: a rule's methods are one number and a request's
 * method one lookup. Past 30 methods (custom ones) the rest stay in sets.
 */
class MethodBits {
  readonly #bits = new Map<string, number>();

  constructor(methods: Iterable<string>) {
    for (const m of methods) if (!this.#bits.has(m) && this.#bits.size < 30) this.#bits.set(m, 1 << this.#bits.size);
  }

  /** The method's bit; 0 for a method no rule names or one beyond the bits. */
  of(method: string): number {
    return this.#bits.get(method) ?? 0;
  }

  mask(methods: readonly string[]): number {
    let mask = 0;
    for (const m of methods) mask |= this.of(m);
    return mask;
  }

  others(methods: readonly string[]): ReadonlySet<string> | undefined {
    const rest = methods.filter((m) => !this.#bits.has(m));
    return rest.length === 0 ? undefined : new Set(rest);
  }
}

const NO_POLICIES: readonly CompiledPolicy[] = [];
const NO_SEGMENTS: readonly number[] = [];

/** What a decision needs besides the message, or the decision already (a refused path). */
type Prepared = { readonly path: string | undefined; readonly plain: string | undefined; readonly host: string; readonly candidates: readonly CompiledPolicy[] } | PolicyDecision;

/**
 * Segments and policies compiled once into a lookup by source segment, then by destination segment
 * (an agent destination) or host (an external one): a decision looks at the policies that can apply
 * to its source and destination, not at every policy of its source. Evaluation:
 * - a matching enforced deny wins;
 * - nothing allowing is a deny ("no policy allows …"), except where a dry-run allow policy covers
 *   this source and destination: then what it does not allow is let through as "would deny";
 * - an allowed call that a dry-run deny matches is let through as "would deny";
 * - otherwise the first allowing policy (in file order) names the decision.
 */
export class PolicyEngine {
  readonly trustDomain: string;
  readonly version: number;
  /** True when some rule has header conditions: only then need callers send request headers. */
  readonly usesHeaders: boolean;
  /** True when some rule has argument conditions: only then need callers parse tool arguments. */
  readonly usesArguments: boolean;
  /** The version's RateLimit documents (enforced by authz/rate-limits, not here). */
  readonly rateLimits: readonly RateLimitDoc[];
  /** The version's Baseline documents (applied by baselines/, not here). */
  readonly baselines: readonly BaselineDoc[];
  readonly #segments: SegmentIndex;
  readonly #segmentCount: number;
  readonly #methods: MethodBits;
  /** Policies to segments by `source * segmentCount + destination` (segment numbers): one lookup. */
  readonly #toSegment = new Map<number, CompiledPolicy[]>();
  /** By source segment number: 1 when some policy from it is to segments. */
  readonly #hasToSegment: Uint8Array;
  /** By source segment number; undefined = no policy from it to hosts. */
  readonly #toHost: (HostPolicies | undefined)[] = [];
  /** Scratch for the candidate lists of one decision (evaluation is synchronous). */
  readonly #lists: (readonly CompiledPolicy[])[] = [];
  /** `onToolChange` of the MCP rules that set it, by `policy\0rules[i]` (README "Tool pinning"). */
  readonly #onToolChange = new Map<string, ToolChangeAction>();
  /** The allow policies to hosts with `spec.to.secrets` (authz/secrets.ts judges findings with them). */
  readonly secretRules: SecretRules;
  /** The destinations whose POST bodies sidecars read for MCP, derived once per version (mcp-body-scope.ts). */
  readonly mcpBody: McpBodyScope;

  constructor(docs: PolicyDocuments, trustDomain: string, version = 0) {
    this.trustDomain = trustDomain;
    this.version = version;
    this.rateLimits = docs.rateLimits ?? [];
    this.baselines = docs.baselines ?? [];
    this.#segments = new SegmentIndex(docs.segments);
    const count = this.#segments.names.length;
    this.#segmentCount = count;
    this.#hasToSegment = new Uint8Array(count);
    this.#methods = new MethodBits(docs.policies.flatMap((p) => p.rules.flatMap((r) => r.methods)));
    const numbers = new Map<string, number[]>();
    this.#segments.names.forEach((name, n) => push(numbers, name, n));
    const numbersOf = (names: readonly string[]): Set<number> => new Set(names.flatMap((name) => numbers.get(name) ?? []));
    let usesHeaders = false;
    let usesArguments = false;
    docs.policies.forEach((doc, order) => {
      doc.rules.forEach((r, i) => {
        if (r.mcp?.onToolChange !== undefined) this.#onToolChange.set(`${doc.name}\0rules[${i}]`, r.mcp.onToolChange);
      });
      const compiled = compilePolicy(doc, order, this.#methods);
      if (compiled.rules.some((r) => r.headers !== undefined)) usesHeaders = true;
      if (compiled.rules.some((r) => r.mcp?.args !== undefined)) usesArguments = true;
      const toSegments = doc.toSegments === undefined ? undefined : numbersOf(doc.toSegments);
      for (const from of numbersOf(doc.fromSegments)) {
        if (toSegments !== undefined) {
          this.#hasToSegment[from] = 1;
          for (const to of toSegments) push(this.#toSegment, from * count + to, compiled);
          continue;
        }
        const hosts = (this.#toHost[from] ??= { exact: new Map(), suffix: [] as CompiledPolicy[] });
        for (const host of compiled.hostsExact) push(hosts.exact, host, compiled);
        if (compiled.hostSuffixes.length > 0) hosts.suffix.push(compiled);
      }
    });
    this.usesHeaders = usesHeaders;
    this.usesArguments = usesArguments;
    this.secretRules = compileSecretRules(docs.policies);
    this.mcpBody = mcpBodyScope(docs, version, parseIdOrUndefined);
  }

  static empty(trustDomain: string): PolicyEngine {
    return new PolicyEngine({ segments: [], policies: [] }, trustDomain);
  }

  /** What a changed or flagged MCP tool leads to when the rule `rule` of `policy` allowed its tools/list; undefined = not set. */
  onToolChange(policy: string, rule: string): ToolChangeAction | undefined {
    return this.#onToolChange.get(`${policy}\0${rule}`);
  }

  /** Names of the segments defined, in definition order. */
  get segmentNames(): readonly string[] {
    return this.#segments.names;
  }

  /** True when a segment selects by labels: only then need callers look up agents' labels. */
  get usesLabels(): boolean {
    return this.#segments.usesLabels;
  }

  /** Names of the segments an identity (with its attested labels) belongs to. */
  segmentsOf(id: SpiffeId, labels?: Labels): readonly string[] {
    if (id.trustDomain !== this.trustDomain) return [];
    return this.#segments.segmentsOf(id, labels);
  }

  evaluate(input: DecisionInput): PolicyDecision {
    const call = this.#prepare(input);
    if ('allow' in call) return call;
    const decided = this.#decide(input, call.path, call.plain, call.host, call.candidates, input.mcp, true);
    const headers = call.candidates.some((p) => p.readsUnboundContent);
    const args = call.candidates.some((p) => p.readsArguments);
    return headers || args ? { ...decided, ...(headers ? { readsUnboundContent: true as const } : {}), ...(args ? { readsArguments: true as const } : {}) } : decided;
  }

  /**
   * Of `tools`, those a `tools/call` by the same source to the same destination and path would be
   * allowed (a dry-run "would deny" counts as allowed: the call would be let through), in order.
   * The segments and candidate policies are found once; only the rules are judged per tool.
   */
  callableTools(input: DecisionInput, tools: readonly string[]): string[] {
    const call = this.#prepare(input);
    if ('allow' in call) return []; // a refused path: every call of it is denied
    return tools.filter((tool) => this.#decide(input, call.path, call.plain, call.host, call.candidates, { method: 'tools/call', tool, arguments: ANY_ARGUMENTS }, false).allow);
  }

  /** The normalized path and host ('' for an agent), and the candidate policies; or the denial of a refused path. */
  #prepare(input: DecisionInput): Prepared {
    let path: string | undefined;
    let plain: string | undefined;
    if (input.method === 'CONNECT' && input.path === '') {
      path = undefined; // a tunnel has no path: only rules without paths can match it
    } else {
      const n = normalizePath(input.path);
      if (!n.ok) return decision(false, '', '', this.version, `ambiguous path: ${n.why}`, false);
      path = n.path;
      plain = n.plain;
    }
    const to = input.destination;
    const host = to.kind === 'host' ? normalizeHost(to.host) : '';
    return { path, plain, host, candidates: this.#candidates(input, host) };
  }

  /**
   * The policies from the source's segments to the destination: to its segments when it is an
   * agent, to its host when it is an external host; in file order, each once.
   */
  #candidates(input: DecisionInput, host: string): readonly CompiledPolicy[] {
    const sources = this.#numbersOf(input.source, input.sourceLabels);
    const lists = this.#lists;
    lists.length = 0;
    const to = input.destination;
    // Looked up once, and only when a source segment has policies to segments.
    let dests: readonly number[] | undefined;
    for (const s of sources) {
      if (to.kind === 'agent') {
        if (this.#hasToSegment[s] !== 1) continue;
        dests ??= this.#numbersOf(to.id, to.labels);
        for (const d of dests) {
          const list = this.#toSegment.get(s * this.#segmentCount + d);
          if (list !== undefined) lists.push(list);
        }
        continue;
      }
      const hosts = this.#toHost[s];
      if (hosts === undefined) continue;
      const exact = hosts.exact.get(host);
      if (exact !== undefined) lists.push(exact);
      if (hosts.suffix.length > 0) lists.push(hosts.suffix);
    }
    const only = lists.length === 1 ? lists[0] : undefined;
    const candidates = only ?? (lists.length === 0 ? NO_POLICIES : mergeByOrder(lists));
    lists.length = 0;
    return candidates;
  }

  #numbersOf(id: SpiffeId, labels: Labels | undefined): readonly number[] {
    return id.trustDomain === this.trustDomain ? this.#segments.numbersOf(id, labels) : NO_SEGMENTS;
  }

  /** `withReason` false: the reason of a deny is left empty (only `allow` is wanted). */
  #decide(input: DecisionInput, path: string | undefined, plain: string | undefined, host: string, candidates: readonly CompiledPolicy[], mcp: McpInput | undefined, withReason: boolean): PolicyDecision {
    let dryRunDeny: CompiledPolicy | undefined;
    let dryRunDenyRule = '';
    let allow: CompiledPolicy | undefined;
    let allowRule = '';
    let dryRunScope: CompiledPolicy | undefined;
    let unreadableMattered = false;
    let headerUnknown = '';
    let argumentFailed: ArgumentCondition | undefined;
    let allowArguments: readonly ArgumentCondition[] | undefined;
    let allowApproval: ApprovalDoc | undefined;
    // A CONNECT to an external host: no request of it is seen unless a policy says `tls:`.
    const tunnel = path === undefined && host !== '';
    let tls: TlsMode | undefined;
    let rulesUnseen: CompiledPolicy | undefined;
    const headers = input.headers ?? NO_HEADERS;
    const version = this.version;
    const methodBit = this.#methods.of(input.method);
    for (const p of candidates) {
      if (p.ports !== undefined && !p.ports.has(input.port)) continue;
      if (p.toHosts && !matchesHost(p, host)) continue;
      if (!p.deny && p.tls !== undefined && tls !== 'inspect') tls = p.tls;
      let rule = matchingRule(p, input.method, methodBit, path, plain, mcp, headers);
      if (rule === undefined && tunnel && !p.deny) {
        // Its rules are judged on each request the sidecar will read inside (tls: inspect or originate).
        if (p.tls !== undefined) rule = '*';
        else rulesUnseen ??= p;
      }
      const unreadable = lastMatchUnreadable;
      if (unreadable) unreadableMattered = true;
      const headerWhy = lastHeaderUnknown;
      if (headerUnknown === '') headerUnknown = headerWhy;
      const ruleArguments = lastRuleArguments;
      // Why an allow did not match (a deny whose conditions fail is no news).
      if (!p.deny) argumentFailed ??= lastArgumentFailed;
      if (rule === undefined) {
        // A dry-run allow that covers this source and destination is being rolled out: what it
        // does not allow would be denied once enforced, so it is reported but let through.
        if (p.dryRun && !p.deny) dryRunScope ??= p;
        continue;
      }
      if (p.deny && !p.dryRun) {
        const unknown = lastArgumentUnknown;
        const argumentWhy = ruleArguments === undefined ? '' : `: its argument conditions hold${unknown === undefined ? '' : ` or cannot be judged (${unknown.why})`}`;
        const reason = withReason ? `policy "${p.name}" denies ${describeCall(input, path, host, mcp)}${unreadable ? mcpWhy(mcp) : ''}${headerWhy === '' ? '' : `: ${headerWhy}`}${argumentWhy}` : '';
        return withArguments(decision(false, p.name, rule, version, reason, false), ruleArguments, mcp);
      }
      if (p.deny) {
        if (dryRunDeny === undefined) {
          dryRunDeny = p;
          dryRunDenyRule = rule;
        }
      } else if (allow === undefined) {
        allow = p;
        allowRule = rule;
        allowArguments = ruleArguments;
        allowApproval = lastRuleApproval;
      }
    }
    // A dry-run deny only matters for a call that would otherwise pass.
    if (allow === undefined && dryRunScope === undefined) {
      const reason = withReason ? `no policy allows ${describeCall(input, path, host, mcp)}${unreadableMattered ? mcpWhy(mcp) : ''}${headerUnknown === '' ? '' : `: ${headerUnknown}`}${argumentFailed === undefined ? '' : `: ${argumentFailed.why}`}${rulesUnseen === undefined ? '' : unseenWhy(rulesUnseen)}` : '';
      const denied = decision(false, '', '', version, reason, false);
      return argumentFailed === undefined ? denied : withArguments(denied, [argumentFailed], mcp);
    }
    if (dryRunDeny !== undefined) {
      const reason = withReason ? `would deny: policy "${dryRunDeny.name}" denies ${describeCall(input, path, host, mcp)}` : '';
      // A dry-run deny never lifts the approval the allowing rule asks for.
      const d = decision(true, dryRunDeny.name, dryRunDenyRule, version, reason, true, tls);
      return allowApproval === undefined ? d : { ...d, approval: allowApproval };
    }
    if (allow !== undefined) {
      const allowed = decision(true, allow.name, allowRule, version, tunnel && tls !== undefined ? `${allow.allowReason} (tls: ${tls}): each request inside is judged on its own` : allow.allowReason, false, tls);
      const judged = allowArguments === undefined ? allowed : withArguments(allowed, allowArguments, mcp);
      return allowApproval === undefined ? judged : { ...judged, approval: allowApproval };
    }
    const scope = dryRunScope as CompiledPolicy;
    return decision(true, scope.name, '', version, withReason ? `would deny: no policy allows ${describeCall(input, path, host, mcp)}` : '', true, tls);
  }
}

/** One shape for every decision; `tls` only on an allowed one. */
function decision(allow: boolean, policy: string, rule: string, version: number, reason: string, dryRunDeny: boolean, tls?: TlsMode): PolicyDecision {
  return tls === undefined ? { allow, policy, rule, version, reason, dryRunDeny } : { allow, policy, rule, version, reason, dryRunDeny, tls };
}

/** Why a tunnel was denied though a policy allows its host and port for some requests. */
function unseenWhy(p: CompiledPolicy): string {
  return `: policy "${p.name}" allows this host only for the requests its rules name, and a CONNECT to an external host is a blind tunnel whose requests the sidecar cannot see; with "tls: inspect" in its "to", each request inside would be judged`;
}

/** The decision with the arguments its rule looked at (values redacted unless loggable). */
function withArguments(d: PolicyDecision, conditions: readonly ArgumentCondition[] | undefined, mcp: McpInput | undefined): PolicyDecision {
  if (conditions === undefined) return d;
  const args = mcp !== undefined && 'arguments' in mcp && mcp.arguments !== undefined && 'value' in mcp.arguments ? mcp.arguments.value : undefined;
  const notes = conditions.map((c) => {
    const v = args === undefined ? undefined : c.valueIn(args);
    return { path: c.path, value: args === undefined ? '(not judged)' : v === undefined ? '(absent)' : c.shown(v) };
  });
  return { ...d, arguments: notes };
}

/** The call, for a reason that names it: built only for decisions that need it (not for an allow). */
function describeCall(input: DecisionInput, path: string | undefined, host: string, mcp: McpInput | undefined): string {
  const mcpCall = mcp === undefined || 'unreadable' in mcp ? '' : ` (MCP ${mcp.method}${mcp.tool === '' ? '' : ` ${mcp.tool}`})`;
  // An agent is named by its mesh host: not by the Host header an INBOUND caller sent.
  const to = input.destination.kind === 'agent' ? meshHostOf(input.destination.id) : host;
  return `${input.method}${path === undefined ? '' : ` ${path}`}${mcpCall} from ${input.source.uri} to ${to}:${input.port}`;
}

function mcpWhy(mcp: McpInput | undefined): string {
  return mcp !== undefined && 'unreadable' in mcp ? `: the body is not a readable MCP request (${mcp.unreadable})` : '';
}

/** Several sorted candidate lists as one, in file order, each policy once (a policy can be filed under several segments). */
function mergeByOrder(lists: readonly (readonly CompiledPolicy[])[]): CompiledPolicy[] {
  const merged = lists.flat().sort((a, b) => a.order - b.order);
  return merged.filter((p, i) => i === 0 || merged[i - 1] !== p);
}

function matchesHost(p: CompiledPolicy, host: string): boolean {
  if (p.hostsExact.has(host)) return true;
  for (const suffix of p.hostSuffixes) if (host.length > suffix.length && host.endsWith(suffix)) return true;
  return false;
}

/** Set by matchingRule (a flag, not a result object: no allocation per policy tried; evaluation is synchronous). */
let lastMatchUnreadable = false;
/** Set by matchingRule: why a header condition could not be judged ('' when all could). */
let lastHeaderUnknown = '';
/** Set by matchingRule: the argument conditions of the rule it returned (undefined when it has none). */
let lastRuleArguments: readonly ArgumentCondition[] | undefined;
/** Set by matchingRule: the first argument condition of an allow rule that did not hold or could not be judged. */
let lastArgumentFailed: ArgumentCondition | undefined;
/** Set by matchingRule: for a deny rule it returned, the first argument condition that could not be judged (and so held). */
let lastArgumentUnknown: ArgumentCondition | undefined;
/** Set by matchingRule: the `approve: required` of the rule it returned (undefined when none). */
let lastRuleApproval: ApprovalDoc | undefined;

/**
 * The label of the first rule the request matches (`*` when the policy has no rules), or undefined;
 * sets `lastMatchUnreadable` when a rule on MCP met a body that could not be read. Such a body fails
 * closed: it never matches an allow rule on MCP and always matches a deny rule on MCP (else an
 * oversized body would slip past `deny tools: [delete_*]`).
 */
function matchingRule(p: CompiledPolicy, method: string, methodBit: number, path: string | undefined, plain: string | undefined, mcp: McpInput | undefined, headers: HeaderInput): string | undefined {
  lastMatchUnreadable = false;
  lastHeaderUnknown = '';
  lastRuleArguments = undefined;
  lastArgumentFailed = undefined;
  lastArgumentUnknown = undefined;
  lastRuleApproval = undefined;
  if (p.rules.length === 0) return '*';
  for (const r of p.rules) {
    if (!r.anyMethod && (r.methodMask & methodBit) === 0 && (r.otherMethods === undefined || !r.otherMethods.has(method))) continue;
    if (!r.anyPath && (path === undefined || !pathHolds(r, path, plain ?? path, p.deny))) continue;
    if (r.headers !== undefined && !headersHold(r.headers, headers, p.deny)) continue;
    if (r.mcp !== undefined) {
      if (mcp === undefined) continue;
      if ('unreadable' in mcp) {
        lastMatchUnreadable = true;
        if (p.deny) return r.label;
        continue;
      }
      if (r.mcp.methods !== undefined && !anyGlob(r.mcp.methods, mcp.method)) continue;
      if (r.mcp.tools !== undefined) {
        // `tools` constrains `tools/call` only; in a deny rule it names what is denied, so a deny of
        // some tools does not also deny `initialize` or `tools/list`.
        if (mcp.method === 'tools/call') {
          if (!anyGlob(r.mcp.tools, mcp.tool)) continue;
        } else if (p.deny) {
          continue;
        }
      }
      if (r.mcp.args !== undefined) {
        if (mcp.method !== 'tools/call' || !argumentsHold(r.mcp.args, mcp.arguments, p.deny)) continue;
        lastRuleArguments = r.mcp.args;
      }
    }
    // An approval binds one tools/call; the other methods such a rule lets through (initialize, tools/list) are not held.
    lastRuleApproval = r.approval !== undefined && mcp !== undefined && 'method' in mcp && mcp.method === 'tools/call' ? r.approval : undefined;
    return r.label;
  }
  return undefined;
}

/**
 * A rule's paths against a path with `;` parameters: an allow rule matches it as sent; a deny rule
 * also matches it without them (`plain`, as Tomcat, Jetty and Spring read it: `/v1/admin;x/users`
 * is `/v1/admin/users` there). As rules name no parameters (load.ts), an allow that matches the
 * path as sent matches the plain path too.
 */
function pathHolds(r: CompiledRule, path: string, plain: string, deny: boolean): boolean {
  return pathMatches(r, path) || (deny && plain !== path && pathMatches(r, plain));
}

function pathMatches(r: CompiledRule, path: string): boolean {
  if (r.exact.has(path)) return true;
  for (let i = 0; i < r.prefixes.length; i++) {
    if (path.startsWith(r.prefixes[i] ?? '') || path === r.prefixRoots[i]) return true;
  }
  return false;
}

const NOT_SENT = { unreadable: 'no arguments were sent to the control plane' } as const;
/** Stands for the whole arguments when they cannot be judged: its `why` says why. */
const unjudged = new ArgumentCondition({ path: 'arguments', loggable: false });

/**
 * Whether every argument condition holds. One that cannot be judged (arguments unreadable or over
 * the bounds, a value of another type, a file path not in normal form) fails closed: it does not
 * hold for an allow rule and holds for a deny rule. Sets `lastArgumentFailed` (an allow rule's
 * first condition that did not hold, keeping an earlier one) and `lastArgumentUnknown` (a matching
 * deny rule's first condition that could not be judged), for the reason.
 */
function argumentsHold(conditions: readonly ArgumentCondition[], input: McpArguments | AnyArguments | undefined, deny: boolean): boolean {
  const args = input ?? NOT_SENT;
  if ('any' in args) return !deny;
  if ('unreadable' in args) {
    unjudged.why = `the tool arguments cannot be judged: ${args.unreadable}`;
    if (deny) lastArgumentUnknown = unjudged;
    else lastArgumentFailed ??= unjudged;
    return deny;
  }
  let unknown: ArgumentCondition | undefined;
  for (const c of conditions) {
    const outcome = c.test(args.value);
    if (outcome === 'holds') continue;
    if (outcome === 'unknown' && deny) {
      unknown ??= c;
      continue;
    }
    if (!deny) lastArgumentFailed ??= c;
    return false;
  }
  if (deny) lastArgumentUnknown = unknown;
  return true;
}

function anyGlob(globs: readonly Glob[], value: string): boolean {
  for (const g of globs) if (g.test(value)) return true;
  return false;
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
    } else if (c.exact === undefined) {
      holds = (sent !== undefined) === c.present;
    } else if (sent === undefined) {
      holds = false;
    } else if (sent.length > 1) {
      holds = false;
      unknown = `header "${c.name}" was sent ${sent.length} times`;
    } else {
      const value = sent[0] ?? '';
      holds = c.exact.has(value) || anyGlob(c.globs, value);
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

function parseIdOrUndefined(uri: string): SpiffeId | undefined {
  try {
    return parseSpiffeId(uri);
  } catch {
    return undefined;
  }
}

export function normalizeHost(host: string): string {
  const h = host.toLowerCase();
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function compileHeader(h: HeaderRuleDoc): CompiledHeader {
  if (!('values' in h)) return { name: h.name, exact: undefined, globs: [], present: h.present };
  // A value with `*` is a glob (`v1-*`); the others are compared whole.
  return { name: h.name, exact: new Set(h.values.filter((v) => !v.includes('*'))), globs: h.values.filter((v) => v.includes('*')).map((v) => new Glob(v)), present: true };
}

function compilePolicy(p: PolicyDoc, order: number, methods: MethodBits): CompiledPolicy {
  const hosts = p.toHosts ?? [];
  return {
    name: p.name,
    order,
    deny: p.action === 'deny',
    dryRun: p.mode === 'dry-run',
    toHosts: p.toSegments === undefined,
    hostsExact: new Set(hosts.filter((h) => !h.startsWith('*.'))),
    // "*.example.com" matches a.example.com and a.b.example.com, not example.com itself.
    hostSuffixes: hosts.filter((h) => h.startsWith('*.')).map((h) => h.slice(1)),
    ports: p.toPorts.length === 0 ? undefined : new Set(p.toPorts),
    tls: p.tls,
    allowReason: `allowed by policy "${p.name}"`,
    readsUnboundContent: p.rules.some((r) => r.headers.length > 0),
    readsArguments: p.rules.some((r) => (r.mcp?.arguments.length ?? 0) > 0),
    rules: p.rules.map((r, i) => {
      const paths = r.paths;
      // "/v1/search/*" matches "/v1/search" and anything below "/v1/search/".
      const prefixes = paths.filter((x) => x.endsWith('/*')).map((x) => x.slice(0, -1));
      return {
        label: `rules[${i}]`,
        anyMethod: r.methods.length === 0,
        methodMask: methods.mask(r.methods),
        otherMethods: methods.others(r.methods),
        anyPath: paths.length === 0 || paths.includes('/*'),
        exact: new Set(paths.filter((x) => !x.endsWith('/*'))),
        prefixes,
        prefixRoots: prefixes.map((x) => x.slice(0, -1)),
        mcp: r.mcp === undefined ? undefined : {
          methods: r.mcp.methods.length === 0 ? undefined : r.mcp.methods.map((g) => new Glob(g)),
          tools: r.mcp.tools.length === 0 ? undefined : r.mcp.tools.map((g) => new Glob(g)),
          args: r.mcp.arguments.length === 0 ? undefined : r.mcp.arguments.map((a) => new ArgumentCondition(a)),
        },
        headers: r.headers.length === 0 ? undefined : r.headers.map(compileHeader),
        approval: r.approval,
      };
    }),
  };
}
