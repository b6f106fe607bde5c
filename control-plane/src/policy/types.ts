import type { RateLimitDoc } from './rate-limit-doc.ts';
import type { SecretsDoc } from './secrets.ts';
import type { BaselineDoc } from './baseline-doc.ts';

/** Validated Segment and Policy documents, as written by the user (before compilation). */
export interface SegmentDoc {
  readonly name: string;
  /** Glob with `*`; undefined = any namespace. */
  readonly namespace: string | undefined;
  /** Globs with `*`; empty when the segment is only `spiffeIds`. */
  readonly serviceAccounts: readonly string[];
  /** Exact SPIFFE IDs that are members too (union with namespace/serviceAccounts/labels). */
  readonly spiffeIds: readonly string[];
  /** Labels an agent must all have (key = value), from its attestation; empty = labels not looked at. */
  readonly labels: Readonly<Record<string, string>>;
  /** Where it was defined, for messages: file:line. */
  readonly at: string;
}

export interface RuleDoc {
  /** Upper-case HTTP methods; empty = any. */
  readonly methods: readonly string[];
  /** Exact paths, or prefixes written `/x/*`; empty = any. */
  readonly paths: readonly string[];
  /** Rules on the MCP JSON-RPC message in the body; undefined = the body is not looked at. */
  readonly mcp: McpRuleDoc | undefined;
  /** Conditions on request headers, all of which must hold; empty = headers are not looked at. */
  readonly headers: readonly HeaderRuleDoc[];
  /** `approve: required`: an allowed call is held until a human approves it (undefined = no approval). */
  readonly approval?: ApprovalDoc;
}

/** A rule's human approval: the admin role that may decide it, and how long a call waits. */
export interface ApprovalDoc {
  readonly role: 'responder' | 'admin';
  readonly timeoutMs: number;
}

/**
 * One condition on a request header (name in lower case): `values` = sent exactly once with a value
 * one of these matches (exactly, or as a `*` glob); `present: true` = sent (any value);
 * `present: false` = not sent.
 */
export type HeaderRuleDoc =
  | { readonly name: string; readonly values: readonly string[] }
  | { readonly name: string; readonly present: boolean };

export interface McpRuleDoc {
  /** Globs on the JSON-RPC method (`tools/*`); empty = any method. */
  readonly methods: readonly string[];
  /** Globs on the tool name of a `tools/call`; empty = any tool. Other methods are not affected. */
  readonly tools: readonly string[];
  /** Conditions on the `tools/call` arguments, all of which must hold; empty = arguments are not looked at. */
  readonly arguments: readonly ArgumentRuleDoc[];
  /** What a pinned tool that changed, or one a poisoning detector flags, leads to (README "Tool pinning"); undefined = deny. */
  readonly onToolChange?: ToolChangeAction;
}

/** `alert`: audit event and metric, the tool stays usable; `deny`: the tool is unlisted and its calls denied until accepted; `quarantine`: deny, and the server's identity is quarantined. */
export type ToolChangeAction = 'alert' | 'deny' | 'quarantine';

/** A JSON scalar a policy can compare an argument with. */
export type ArgumentScalar = string | number | boolean | null;

/**
 * One condition on a `tools/call` argument, at `path` into `params.arguments` (`amount`,
 * `to.account`, `items[0]`): every constraint given must hold. `present: false` = not sent.
 */
export interface ArgumentRuleDoc {
  readonly path: string;
  readonly present?: boolean;
  readonly equals?: ArgumentScalar;
  readonly oneOf?: readonly ArgumentScalar[];
  /** `*` glob on a string. */
  readonly glob?: string;
  /** `*` globs on a file path, which must be absolute and in normal form (no `.`, `..`, `//`, `\\`). */
  readonly filePath?: readonly string[];
  /** RE2 syntax (linear-time matching), matched against the whole string. */
  readonly regex?: string;
  readonly min?: number;
  readonly max?: number;
  /** In Unicode code points. */
  readonly minLength?: number;
  readonly maxLength?: number;
  /** The value may appear in audit lines and reasons (else it is redacted). */
  readonly loggable: boolean;
}

export type PolicyAction = 'allow' | 'deny';
/**
 * How the sidecar reaches an allowed external host (`spec.to.tls`): `inspect` terminates the agent's
 * TLS inside its CONNECT (egress CA) so each request is judged; `originate` takes the agent's plain
 * http:// and calls https:// upstream. Unset: a CONNECT is a blind tunnel judged on host and port.
 */
export type TlsMode = 'inspect' | 'originate';
export type PolicyMode = 'enforce' | 'dry-run';

export interface PolicyDoc {
  readonly name: string;
  readonly fromSegments: readonly string[];
  readonly toSegments: readonly string[] | undefined;
  /** Exact host names or `*.suffix`. */
  readonly toHosts: readonly string[] | undefined;
  /** Empty = any port. */
  readonly toPorts: readonly number[];
  /** Empty = any request. */
  readonly rules: readonly RuleDoc[];
  /** Policies to hosts only; undefined = not set. */
  readonly tls?: TlsMode;
  /** Allow policies to hosts only: the detectors whose findings deny a request (README "Secret and PII blocking"); undefined = none. */
  readonly secrets?: SecretsDoc;
  readonly action: PolicyAction;
  readonly mode: PolicyMode;
  readonly at: string;
}

export interface PolicyDocuments {
  readonly segments: readonly SegmentDoc[];
  readonly policies: readonly PolicyDoc[];
  /** RateLimit documents (policy/rate-limit-doc.ts); undefined = none. */
  readonly rateLimits?: readonly RateLimitDoc[];
  /** Baseline documents (policy/baseline-doc.ts); undefined = none. */
  readonly baselines?: readonly BaselineDoc[];
}
