/**
 * The control plane's state behind one interface: the embedded SQLite store today, etcd for more
 * than one replica later. Times are milliseconds since the Unix epoch.
 */
export interface AgentRecord {
  readonly spiffeId: string;
  /** host:port of the agent's sidecar inbound mTLS listener. */
  readonly inboundAddress: string;
  readonly updatedAt: number;
}

export interface JoinTokenRecord {
  /** Hex SHA-256 of the token; the token itself is never stored. */
  readonly hash: string;
  readonly spiffeId: string;
  readonly expiresAt: number;
}

export interface IssuedCertificate {
  readonly serial: string;
  readonly spiffeId: string;
  readonly notAfter: number;
  readonly issuedAt: number;
}

/** Why a join token could not be consumed. */
export type JoinTokenRefusal = 'unknown' | 'used' | 'expired';

export type ConsumeResult = { readonly ok: true; readonly spiffeId: string } | { readonly ok: false; readonly reason: JoinTokenRefusal };

export interface Store {
  upsertAgent(agent: AgentRecord): void;
  getAgent(spiffeId: string): AgentRecord | undefined;

  insertJoinToken(token: JoinTokenRecord): void;
  /** Marks the token used if it is unused and unexpired, atomically: two racing calls cannot both win. */
  consumeJoinToken(hash: string, now: number): ConsumeResult;

  recordCertificate(cert: IssuedCertificate): void;
  listCertificates(spiffeId: string): IssuedCertificate[];

  addAdminTokenHash(hash: string): void;
  hasAdminTokenHash(hash: string): boolean;

  close(): void;
}
