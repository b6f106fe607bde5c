// The audit event, version 1: what every producer records (docs/audit-schema.md describes each
// field; docs/audit-event.schema.json is the JSON Schema the tests hold every emitted event to).

import type { ToolPinFinding } from '../mcp-pins/tool-pins.ts';

/** Bumped when a field changes meaning or goes away; adding an optional field keeps it. */
export const AUDIT_SCHEMA_VERSION = 1;

/** An MCP request as decided: its method and tool, or why it could not be read. */
export interface AuditMcp {
  readonly method?: string;
  readonly tool?: string;
  readonly unreadable?: string;
  /** Mcp-Method / Mcp-Name headers that did not match the body: why (the call is then denied). */
  readonly headerMismatch?: string;
  /** The tools/call arguments the deciding rule looked at: path and value, `[redacted]` unless the policy marks it loggable. */
  readonly arguments?: readonly { readonly path: string; readonly value: string }[];
  /** A tools/list answer being filtered: how many tools it listed, and those allowed. */
  readonly listedTools?: number;
  readonly allowedTools?: readonly string[];
  /** Of those, the tools that changed since pinned or were flagged by a poisoning detector, and what was done (README "Tool pinning"). */
  readonly toolPins?: readonly ToolPinFinding[];
}

/** What an Authorize request asked about (also named by its refusals, as far as it was read). */
export interface AuditRequest {
  readonly direction: 'outbound' | 'inbound' | 'unspecified';
  /** SPIFFE ID of the caller of the call; '' when unknown. */
  readonly source: string;
  readonly sourceSegments?: readonly string[];
  /** SPIFFE ID of the agent called; '' for an external host. */
  readonly destination: string;
  readonly destinationSegments?: readonly string[];
  readonly host: string;
  readonly port: number;
  readonly method: string;
  /** Path and query, each query value (and any fragment) replaced by [redacted]. */
  readonly path: string;
  readonly mcp?: AuditMcp;
  /** Read inside the agent's TLS, which its sidecar terminated (tls: inspect). */
  readonly inspected?: boolean;
}

/**
 * A call under `approve: required`: the approval's id, its step (pending: held; approved, denied,
 * timeout: how the held call's wait ended; unknown: no such approval for this call; released: the
 * inbound check of an approved call), who decided, and the hash of the exact call it binds.
 */
export interface AuditApproval {
  readonly id: string;
  readonly state: 'pending' | 'approved' | 'denied' | 'timeout' | 'unknown' | 'released';
  readonly binding?: string;
  readonly by?: string;
  readonly reason?: string;
}

/** An Authorize decision (allow, deny, or pending: held for a human approval), one per call decided. */
export interface DecisionRecord extends AuditRequest {
  readonly decisionId: string;
  readonly verdict: 'allow' | 'deny' | 'pending';
  readonly approval?: AuditApproval;
  /** `dry-run`: a dry-run policy would have denied this call and let it through instead. */
  readonly mode: 'enforce' | 'dry-run';
  readonly policyVersion: number;
  readonly policy: string;
  readonly rule: string;
  readonly reason: string;
  /** Time spent deciding, in milliseconds. */
  readonly latencyMs: number;
  /** How the sidecar reaches an allowed external host (policy `tls:`); absent: as asked (tunnel or plain HTTP). */
  readonly tls?: 'inspect' | 'originate';
  /** A RateLimit stopped this call (mode enforce: verdict deny) or would have (dry-run: let through, mode dry-run). */
  readonly rateLimit?: { readonly name: string; readonly per: 'source' | 'source-destination' | 'policy'; readonly mode: 'enforce' | 'dry-run'; readonly retryAfterMs: number };
  /** The threat feed entry the destination matched (the call is then denied, reason `threat_feed: …`). */
  readonly threat?: { readonly feed: string; readonly version: string; readonly entry: string };
  /** What the sidecar's secret and PII detectors found in the request: detector (`id@version`) and field, never the text. */
  readonly secrets?: readonly { readonly detector: string; readonly field: string }[];
}

/** A request refused before any decision: no or a wrong identity, malformed, over a limit. */
export interface RefusalRecord {
  /** The RPC or admin route refused: `Authorize`, `AuthorizeStream`, `SignCertificate`, `POST /v1/policy/apply` … */
  readonly operation: string;
  /** Stable, for counting: `unauthenticated`, `bad_request`, `permission_denied`, an AIRLOCK_* code … */
  readonly reasonCode: string;
  /** The message the caller was given. */
  readonly reason: string;
  /** The verified caller (SPIFFE ID or admin name), when there is one. */
  readonly caller?: string;
  /** The network peer (gRPC refusals without an identity). */
  readonly peer?: string;
  /** How a certificate request attested (join_token, kubernetes, renewal). */
  readonly attestation?: string;
  /** Refusals of the same kind left unrecorded since the previous one (their rate is bounded). */
  readonly suppressed?: number;
  readonly decisionId?: string;
  /** What an Authorize request asked about, when refused. */
  readonly request?: AuditRequest;
}

/** A change made through the admin API (or one in force here, made on another replica). */
export interface AdminRecord {
  readonly actor: string;
  readonly role?: string;
  /** `policy.apply`, `join-token.create`, `ca.activate`, `agent.quarantine` … */
  readonly action: string;
  /** What it acted on: an identity, a token id, a policy version … */
  readonly target: string;
  /** The action's particulars: JSON values only, never a secret. */
  readonly detail: Readonly<Record<string, unknown>>;
}

/**
 * Behaviour that departs from an identity's learned baseline (README "Behaviour baselines"): a
 * call on a flow not learned, or at a rate far above the learned one, and what was done.
 */
export interface AnomalyRecord {
  /** The identity whose call it was. */
  readonly identity: string;
  /** The Baseline document that selects it. */
  readonly baseline: string;
  readonly anomaly: 'new-flow' | 'rate';
  /** `DEST METHOD /path/{id}[ tool=T| mcp=M]`. */
  readonly flow: string;
  readonly why: string;
  /** What was done: recorded only, that call denied, or the agent quarantined. */
  readonly response: 'alert' | 'deny' | 'quarantine';
  readonly mode: 'enforce' | 'dry-run';
  /** The decision of the call (its decision event has the same id). */
  readonly decisionId: string;
}

/** A previous chain of this replica (from before a restart), as far as it was checkpointed. */
export interface ChainLink {
  readonly chain: string;
  readonly seq: number;
  readonly hash: string;
}

/** A checkpoint's signature: over the canonical checkpoint without `signature`. */
export interface CheckpointSignature {
  /** RS256 or ES256 (SHA-256; PKCS#1 v1.5 or DER ECDSA), after the signing key. */
  readonly alg: 'RS256' | 'ES256';
  /** The signer's certificate, then intermediates: base64 DER. */
  readonly certificates: readonly string[];
  readonly value: string;
}

/** What every event carries. */
export interface AuditEnvelope {
  readonly schemaVersion: typeof AUDIT_SCHEMA_VERSION;
  readonly id: string;
  readonly time: string;
  readonly replica: string;
  /** The hash chain: its id (one per process start), the event's place, and the previous event's hash. */
  readonly chain: string;
  readonly seq: number;
  readonly prevHash: string;
}

export type AuditEvent = AuditEnvelope &
  (
    | ({ readonly kind: 'decision' } & DecisionRecord)
    | ({ readonly kind: 'refusal' } & RefusalRecord)
    | ({ readonly kind: 'admin' } & AdminRecord)
    | ({ readonly kind: 'anomaly' } & AnomalyRecord)
    | { readonly kind: 'chain-start'; readonly previous?: ChainLink }
    | { readonly kind: 'checkpoint'; readonly signature: CheckpointSignature }
  );

export type AuditKind = AuditEvent['kind'];

/** What producers call: one method per kind of event. */
export interface AuditLog {
  decision(record: DecisionRecord): void;
  refusal(record: RefusalRecord): void;
  admin(record: AdminRecord): void;
  anomaly(record: AnomalyRecord): void;
  /** False while events cannot be kept (a sink's spool full, fail-closed): decisions are then refused. */
  accepting(): boolean;
}

/** An AuditLog that records nothing (unit tests of code that needs one). */
export const NO_AUDIT: AuditLog = { decision: () => undefined, refusal: () => undefined, admin: () => undefined, anomaly: () => undefined, accepting: () => true };
