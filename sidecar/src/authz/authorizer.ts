/**
 * The sidecar's view of authorization: one question per call, one fresh answer. Types are our own
 * (not the generated proto ones) so the transport behind this interface can change (a coalescing
 * long-lived stream replaces unary calls later) without touching the proxies.
 */
import type { ListedTool } from '@airlock/common/mcp-tool-pins';
import type { SecretFinding } from '@airlock/common/secret-detectors';
import type { AuthzHeaders } from '../http/authz-headers.ts';

export type Direction = 'outbound' | 'inbound';

export interface AuthzRequest {
  readonly direction: Direction;
  /** OUTBOUND: our own ID. INBOUND: the peer's ID from the verified handshake. */
  readonly sourceId: string;
  /** INBOUND: our own ID. OUTBOUND: undefined (the control plane resolves the host). */
  readonly destinationId?: string;
  readonly host: string;
  readonly port: number;
  /** HTTP method; CONNECT for tunnels. */
  readonly method: string;
  /** Path with query; empty for CONNECT. */
  readonly path: string;
  /** The MCP message of a POST body, or why it could not be read; undefined for other requests. */
  readonly mcp?: McpMessage;
  /** Why the request's Mcp-Method / Mcp-Name headers do not match its body; undefined when they match or are absent. */
  readonly mcpHeaderMismatch?: string;
  /** Tool names of a `tools/list` answer: the decision says which of them may be called. */
  readonly listedTools?: readonly string[];
  /** Of the same answer, each listed tool's hash and poisoning flags, for pinning. */
  readonly listedToolPins?: readonly ListedTool[];
  /** Request headers for header rules (bounded; see authzHeaders); undefined = none. */
  readonly headers?: AuthzHeaders;
  /** Read inside the agent's TLS, terminated by the sidecar (tls: inspect). */
  readonly inspected?: boolean;
  /** The second ask about a call held for a human approval: the answer waits for its outcome (withApprovals). */
  readonly approvalId?: string;
  /** The control-plane endpoint that holds that approval (it alone can answer the wait). */
  readonly approvalEndpoint?: string;
  /** OUTBOUND: what the secret and PII detectors found in the path, headers and body prefix (never the text); undefined = nothing. */
  readonly secretFindings?: readonly SecretFinding[];
  /** OUTBOUND to a name: the addresses it resolved to, checked, that the call will dial (threat feeds judge them); undefined = none. */
  readonly destinationAddresses?: readonly string[];
  /** A POST whose body was not read for MCP (the pushed scope says no rule reads it): judged as one without MCP. */
  readonly mcpBodySkipped?: boolean;
}

/**
 * How an allowed external host is reached (policy `tls:`): `inspect` = terminate the agent's TLS in
 * its CONNECT and judge each request; `originate` = plain HTTP from the agent, TLS upstream;
 * `unknown` = a mode this sidecar does not know (refused); undefined = blind tunnel / plain HTTP.
 */
export type TlsMode = 'inspect' | 'originate' | 'unknown';

/**
 * What the sidecar read of an MCP (JSON-RPC) POST body. `tool` and `arguments` (params.arguments
 * as bounded JSON, or why it cannot be judged) are set for `tools/call` only.
 */
export type McpMessage =
  | { readonly method: string; readonly tool: string; readonly id?: unknown; readonly arguments?: { readonly json: string } | { readonly unreadable: string } }
  | { readonly unreadable: string };

/** Where an allowed mesh call goes, and who must answer there. */
export interface Upstream {
  readonly address: string;
  readonly spiffeId: string;
}

export type Decision =
  | {
      readonly allowed: true;
      readonly decisionId: string;
      readonly reason: string;
      readonly policy: string;
      readonly policyVersion: number;
      readonly rule: string;
      /** Undefined for an external destination: the sidecar connects to it itself. */
      readonly upstream: Upstream | undefined;
      readonly dryRunDeny: boolean;
      /** Of the request's listedTools, those that may be called (empty when none were listed). */
      readonly allowedTools: readonly string[];
      /** Undefined: a blind tunnel, plain HTTP. */
      readonly tls?: TlsMode;
      /** An allowed mesh call's ticket for its upstream (sent in the airlock-ticket header); absent when none was issued. */
      readonly ticket?: string;
    }
  | {
      readonly allowed: false;
      readonly decisionId: string;
      readonly reason: string;
      readonly policy: string;
      readonly policyVersion: number;
      readonly rule: string;
      /** Held for a human approval: ask again with this id, waiting up to waitMs (withApprovals); else a deny. */
      readonly approval?: { readonly id: string; readonly waitMs: number; readonly endpoint?: string };
      /** How a held call's approval ended when it was not approved: approval_denied, approval_timeout, approval_unknown. */
      readonly approvalOutcome?: string;
      /** A RateLimit denied it: when to try again (ms, at least 1); answered 429 with Retry-After. */
      readonly retryAfterMs?: number;
      /** Not decided yet: resolve the (external) name and ask again with destinationAddresses (egress-ask.ts). */
      readonly addressesRequired?: true;
      /** Not a decision: the control plane needs the skipped MCP body; read it and ask again (mcp/lazy-body.ts). */
      readonly mcpBodyRequired?: true;
    };

export interface Authorizer {
  /**
   * Resolves with a decision, or rejects with AIRLOCK_AUTHZ_UNAVAILABLE (callers fail closed).
   * `timeoutMs`: this call's deadline, when less than the configured one is left (a retry).
   */
  authorize(request: AuthzRequest, timeoutMs?: number): Promise<Decision>;
  close(): void;
}
