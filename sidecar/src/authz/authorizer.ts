/**
 * The sidecar's view of authorization: one question per call, one fresh answer. Types are our own
 * (not the generated proto ones) so the transport behind this interface can change (a coalescing
 * long-lived stream replaces unary calls later) without touching the proxies.
 */
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
}

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
      /** Undefined for an external destination: the sidecar connects to it itself. */
      readonly upstream: Upstream | undefined;
      readonly dryRunDeny: boolean;
    }
  | {
      readonly allowed: false;
      readonly decisionId: string;
      readonly reason: string;
      readonly policy: string;
    };

export interface Authorizer {
  /** Resolves with a decision, or rejects with AIRLOCK_AUTHZ_UNAVAILABLE (callers fail closed). */
  authorize(request: AuthzRequest): Promise<Decision>;
  close(): void;
}
