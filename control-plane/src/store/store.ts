/**
 * The control plane's state behind one interface: the embedded SQLite store (one replica) or etcd
 * (any number). Every method is asynchronous (etcd is a network away); what a decision needs is held
 * in memory and never read from here on the call path. Times are milliseconds since the Unix epoch.
 */
export interface AgentRecord {
  readonly spiffeId: string;
  /** host:port of the agent's sidecar inbound mTLS listener. */
  readonly inboundAddress: string;
  readonly updatedAt: number;
  /**
   * Labels from its attestation (join token, Kubernetes), matched by Segment selectors. Set at
   * issuance; an upsert without labels (a renewal) keeps those stored. Read back always set.
   */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface JoinTokenRecord {
  /** Hex SHA-256 of the token; the token itself is never stored. */
  readonly hash: string;
  readonly spiffeId: string;
  readonly expiresAt: number;
  readonly createdAt?: number;
  /** Labels the agent gets when it joins with this token. */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface IssuedCertificate {
  readonly serial: string;
  readonly spiffeId: string;
  readonly notAfter: number;
  readonly issuedAt: number;
  /** Id of the CA that signed it (see CaRootRecord.id); absent for certificates issued before roots were tracked. */
  readonly issuer?: string;
}

/** Where a root of the bundle is in its rollover: prepared (trusted, not issuing), active (issuing), previous (trusted, no longer issuing), retired (gone from the bundle). */
export type CaRootState = 'prepared' | 'active' | 'previous' | 'retired';

/**
 * One self-made root CA. Its key is either sealed here with the key-encryption key (`sealedKey`: every
 * replica can open it), or the file `keyFile` in one replica's data dir (mode 0600; one replica).
 */
export interface CaRootRecord {
  /** Lowercase hex subject key identifier of the root. */
  readonly id: string;
  readonly certPem: string;
  /** '' when the key is sealed in the record. */
  readonly keyFile: string;
  readonly sealedKey?: string;
  readonly state: CaRootState;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** Sidecars not holding an SVID from root `rootId` renew at once (`ca activate --renew-now` at `requestedAt`). */
export interface RenewNowRequest {
  readonly rootId: string;
  readonly requestedAt: number;
}

/**
 * A master secret tickets are MACed from (one key per destination identity is derived from it by
 * HKDF, see authz/tickets/ticket-keys.ts): every replica derives the same keys from the store.
 */
export interface TicketSecretRecord {
  /** 1, 2, …: the highest is the newest; a ticket names the key id it was MACed under. */
  readonly keyId: number;
  /** 32 random bytes: `v1:…` sealed with the key-encryption key when one is set, else base64. */
  readonly secret: string;
  readonly createdAt: number;
}

/** A join token as listed to an admin: never the secret, only its hash. */
export interface JoinTokenListing extends JoinTokenRecord {
  readonly createdAt: number | undefined;
  readonly usedAt: number | undefined;
  readonly revokedAt: number | undefined;
}

/** An identity contained by a responder: every decision naming it is denied until released or `until`. */
export interface QuarantineRecord {
  /** The identity; for a selector its key `segment:NAME` or `label:KEY=VALUE` (incident/quarantine-target.ts). */
  readonly spiffeId: string;
  readonly reason: string;
  /** Who quarantined it (the admin principal's name). */
  readonly actor: string;
  readonly since: number;
  /** When it ends by itself; undefined: until released. */
  readonly until?: number;
}

/**
 * One MCP tool as pinned on one MCP server (README "Tool pinning"): the hash accepted on first
 * sight or by an operator, and a version seen since that was not accepted.
 */
export interface ToolPinRecord {
  /** The MCP server: its SPIFFE ID (a mesh destination) or `host:port` (an external one). */
  readonly server: string;
  readonly tool: string;
  /** The hash accepted; '' when none was yet (a poisoning detector flagged it at first sight). */
  readonly hash: string;
  readonly pinnedAt: number;
  /** `first-use`, or the name of the admin who accepted it. */
  readonly pinnedBy: string;
  /** Another version seen and not accepted: changed from `hash`, or flagged. */
  readonly pending?: {
    readonly hash: string;
    readonly seenAt: number;
    /** The detectors that flagged it, `id@version`. */
    readonly flags: readonly string[];
    /** What the rule that listed it chose: `alert` leaves the tool usable. */
    readonly action: 'alert' | 'deny' | 'quarantine';
  };
}

/** One flow of an identity's behaviour baseline (baselines/learner.ts). */
export interface BaselineFlowRecord {
  /** `DEST METHOD /path/{id}[ tool=T| mcp=M]` (baselines/flows.ts). */
  readonly flow: string;
  /** Learned, or accepted by an operator: normal. False: first seen after learning (an anomaly), not accepted. */
  readonly normal: boolean;
  readonly firstSeen: number;
  readonly lastSeen: number;
  readonly calls: number;
  /** The most calls seen in one window (`windowMs` of the record) while learning or since accepted. */
  readonly peak: number;
  /** The operator who accepted it as normal, if one did. */
  readonly acceptedBy?: string;
}

/** What the control plane learned of one identity's behaviour (README "Behaviour baselines"). */
export interface BaselineRecord {
  readonly spiffeId: string;
  /** Its first call seen: learning lasts the Baseline's `learn` from here. */
  readonly startedAt: number;
  readonly updatedAt: number;
  /** The window call rates are counted in (a minute, or the learning period if shorter). */
  readonly windowMs: number;
  readonly flows: readonly BaselineFlowRecord[];
  /** New flows not kept because the identity had the most flows kept per identity. */
  readonly droppedFlows: number;
}

/** A decision as an incident record keeps it (a few fields of the audit decision event). */
export interface IncidentDecision {
  readonly at: number;
  readonly decisionId: string;
  readonly direction: string;
  readonly source: string;
  readonly destination: string;
  readonly host: string;
  readonly method: string;
  readonly path: string;
  readonly mcpTool?: string;
  readonly verdict: 'allow' | 'deny' | 'pending';
  readonly policy: string;
  readonly reason: string;
}

/** What a quarantine contained and when, set by a responder and ended by a release (or its `until`). */
export interface IncidentRecord {
  /** `inc-<UTC time to the millisecond>-<random>`: sorts by when it was opened. */
  readonly id: string;
  /** The quarantine's key (QuarantineRecord.spiffeId). */
  readonly target: string;
  readonly reason: string;
  /** The admin principal who quarantined, and its role. */
  readonly openedBy: string;
  readonly openedByRole: string;
  readonly openedAt: number;
  readonly until?: number;
  /** The identities it contained when set (and any more seen at release), at most a bounded number. */
  readonly matched: readonly string[];
  /** How many it matched in all (may exceed `matched.length`). */
  readonly matchedTotal: number;
  /** Decisions naming them just before it was set (this replica's recent ones). */
  readonly before: readonly IncidentDecision[];
  readonly releasedAt?: number;
  readonly releasedBy?: string;
  /** Decisions naming them from when it was set until its release. */
  readonly after?: readonly IncidentDecision[];
}

export interface RevokedIdentity {
  readonly spiffeId: string;
  readonly revokedAt: number;
}

/** Why a join token could not be consumed. */
export type JoinTokenRefusal = 'unknown' | 'used' | 'expired' | 'revoked';

export type ConsumeResult =
  | { readonly ok: true; readonly spiffeId: string; readonly labels: Readonly<Record<string, string>>; readonly retry?: true }
  | { readonly ok: false; readonly reason: JoinTokenRefusal };

/**
 * Who spends a join token. A token is single-use, but the answer to the request that spent it can
 * be lost (a replica dies, a deadline passes); the same claimant (the same CSR key and inbound
 * address) may then spend it again within `retryWithinMs` of the first use, and nobody else may.
 */
export interface JoinTokenClaim {
  readonly claimant: string;
  readonly retryWithinMs: number;
}

/** One version of the policy set: every document as written, in order. */
export interface PolicyVersionRecord {
  readonly version: number;
  /** JSON of the documents (PolicyEntry[]). */
  readonly entries: string;
  readonly createdAt: number;
  /** Who made it: the admin token's name, or `policy-file` at start. */
  readonly actor: string;
  /** apply | delete | rollback */
  readonly action: string;
  readonly summary: string;
}

export type AdminRole = 'viewer' | 'editor' | 'responder' | 'admin';

export interface ApiTokenRecord {
  readonly hash: string;
  readonly name: string;
  readonly role: AdminRole;
  readonly createdAt: number;
  /** Set once revoked: the token authenticates no one any more (its name stays taken). */
  readonly revokedAt?: number;
}

/** An admin client certificate: its role was chosen when it was issued and is looked up by serial. */
export interface AdminCertificateRecord {
  /** Lowercase hex, as in IssuedCertificate. */
  readonly serial: string;
  readonly name: string;
  readonly role: AdminRole;
  readonly createdAt: number;
  readonly notAfter: number;
  /** Set once revoked: the certificate authenticates no one any more. */
  readonly revokedAt?: number;
}

/** Every change made through the admin API: who, what, and the diff (JSON). */
export interface AuditEventRecord {
  readonly at: number;
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly detail: string;
}

/**
 * A change another replica made, as a watch on the store reports it: what a replica holds in
 * memory for decisions follows these. Applying one twice, or one already applied, changes nothing.
 */
export type StoreEvent =
  | { readonly kind: 'agent'; readonly agent: AgentRecord }
  | { readonly kind: 'revocation'; readonly revoked: RevokedIdentity }
  | { readonly kind: 'policy-version'; readonly version: number }
  /** A CA ring step (prepare, activate, retire) or its renew-now request. */
  | { readonly kind: 'ca-ring' }
  /** A quarantine set or released. */
  | { readonly kind: 'quarantine' }
  /** A ticket secret added (a rotation). */
  | { readonly kind: 'ticket-secrets' }
  /** An MCP tool pinned, changed or accepted. */
  | { readonly kind: 'tool-pin'; readonly pin: ToolPinRecord }
  /** A behaviour baseline written (`record`) or reset (none). */
  | { readonly kind: 'baseline'; readonly spiffeId: string; readonly record?: BaselineRecord };

export interface StoreWatch {
  close(): Promise<void>;
}

export interface Store {
  /** Answers when the store can be reached (and, for etcd, has a leader); throws StoreUnavailable otherwise. */
  ping(): Promise<void>;
  /**
   * Reports every change written from now on by any client of this store (the embedded store has
   * one, this process: nothing to report). `onTrouble` hears of a watch that broke and resumed.
   */
  watch(onEvent: (event: StoreEvent) => void, onTrouble: (why: string) => void): Promise<StoreWatch>;

  upsertAgent(agent: AgentRecord): Promise<void>;
  getAgent(spiffeId: string): Promise<AgentRecord | undefined>;

  insertJoinToken(token: JoinTokenRecord): Promise<void>;
  /**
   * Marks the token used by `claim.claimant` if it is unused and unexpired, atomically: two racing
   * calls cannot both win. A token used by the same claimant within `claim.retryWithinMs` answers
   * again with `retry: true`.
   */
  consumeJoinToken(hash: string, now: number, claim: JoinTokenClaim): Promise<ConsumeResult>;
  /** Every join token, newest first. */
  listJoinTokens(): Promise<JoinTokenListing[]>;
  /** The tokens whose hash starts with `hashPrefix`. */
  findJoinTokens(hashPrefix: string): Promise<JoinTokenListing[]>;
  /** Marks the tokens whose hash starts with `hashPrefix` revoked; returns those that matched (revoked or not before). */
  revokeJoinTokens(hashPrefix: string, now: number): Promise<JoinTokenListing[]>;

  recordCertificate(cert: IssuedCertificate): Promise<void>;
  listCertificates(spiffeId: string): Promise<IssuedCertificate[]>;
  /** Forgets the records of certificates that expired before `expiredBefore`; returns how many. */
  pruneCertificates(expiredBefore: number): Promise<number>;
  /** Certificates signed by `issuer` that are still valid at `now`: how many, and the last expiry. */
  unexpiredCertificatesOf(issuer: string, now: number): Promise<{ readonly count: number; readonly lastNotAfter: number | undefined }>;

  listCaRoots(): Promise<CaRootRecord[]>;
  /** Stores `first` only if the store holds no root yet (two replicas starting at once make one ring); the roots after. */
  initCaRoots(first: CaRootRecord): Promise<CaRootRecord[]>;
  /** Inserts or replaces these roots in one transaction (a rollover step changes two at once). */
  saveCaRoots(roots: readonly CaRootRecord[]): Promise<void>;
  /** Gives certificates recorded without an issuer this one (when the first root becomes tracked). */
  assignUnknownIssuer(issuer: string): Promise<void>;
  /** The `ca activate --renew-now` request still being served, if any. */
  getRenewNowRequest(): Promise<RenewNowRequest | undefined>;
  setRenewNowRequest(request: RenewNowRequest | undefined): Promise<void>;
  /** Identities holding an unexpired certificate of another issuer than `issuer` and none from it issued at or after `since`. */
  countIdentitiesAwaitingRenewal(issuer: string, since: number, now: number): Promise<number>;

  /** Marks an identity revoked (idempotent: the first revocation time is kept). */
  revokeIdentity(spiffeId: string, revokedAt: number): Promise<void>;
  listRevokedIdentities(): Promise<RevokedIdentity[]>;

  /** Sets (or replaces) the quarantine of an identity. */
  quarantine(record: QuarantineRecord): Promise<void>;
  /** Ends it; returns the record released, if there was one. */
  release(spiffeId: string): Promise<QuarantineRecord | undefined>;
  /** Every quarantine set and not released (expired ones too: the reader compares `until`). */
  listQuarantines(): Promise<QuarantineRecord[]>;

  listAgents(): Promise<AgentRecord[]>;

  /** Inserts or replaces the pin of `pin.tool` on `pin.server`. */
  putToolPin(pin: ToolPinRecord): Promise<void>;
  /** Every tool pin, by server and tool. */
  listToolPins(): Promise<ToolPinRecord[]>;

  /** The ticket secrets, newest first: at most two (the current one and the one before). */
  listTicketSecrets(): Promise<TicketSecretRecord[]>;
  /**
   * Stores `next` unless a secret with its key id exists (of two replicas rotating at once, one
   * wins; both then read the same), and drops any older than the one before it. True if stored.
   */
  addTicketSecret(next: TicketSecretRecord): Promise<boolean>;

  latestPolicyVersion(): Promise<PolicyVersionRecord | undefined>;
  getPolicyVersion(version: number): Promise<PolicyVersionRecord | undefined>;
  /** Newest first; `entries` omitted to keep it small. */
  listPolicyVersions(limit: number): Promise<Omit<PolicyVersionRecord, 'entries'>[]>;
  /** Stores a new version and its audit event in one transaction; fails if the version exists. */
  appendPolicyVersion(record: PolicyVersionRecord, audit: AuditEventRecord): Promise<void>;

  addApiToken(token: ApiTokenRecord): Promise<void>;
  findApiToken(hash: string): Promise<ApiTokenRecord | undefined>;
  /** Every API token (hashes included: for the caller to leave out), by name. */
  listApiTokens(): Promise<ApiTokenRecord[]>;
  /** Marks the token named `name` revoked (the first revocation time is kept); undefined when no token has that name. */
  revokeApiToken(name: string, at: number): Promise<ApiTokenRecord | undefined>;
  addAdminCertificate(cert: AdminCertificateRecord): Promise<void>;
  findAdminCertificate(serial: string): Promise<AdminCertificateRecord | undefined>;
  /** Marks every admin certificate issued to `name` revoked (first time kept); how many there are. */
  revokeAdminCertificates(name: string, at: number): Promise<number>;
  addAuditEvent(event: AuditEventRecord): Promise<void>;
  listAuditEvents(limit: number): Promise<AuditEventRecord[]>;

  /** Stores an incident record, replacing the one with its id. */
  saveIncident(record: IncidentRecord): Promise<void>;
  getIncident(id: string): Promise<IncidentRecord | undefined>;
  /** The newest `limit` incidents, newest first. */
  listIncidents(limit: number): Promise<IncidentRecord[]>;
  /** The newest incident of `target` not yet released, if any. */
  openIncidentOf(target: string): Promise<IncidentRecord | undefined>;

  /** Inserts or replaces these baselines (one per identity), as one batch. */
  putBaselines(records: readonly BaselineRecord[]): Promise<void>;
  /** Every baseline, by identity. */
  listBaselines(): Promise<BaselineRecord[]>;
  /** Forgets the baseline of `spiffeId`; true if there was one. */
  deleteBaseline(spiffeId: string): Promise<boolean>;

  /** Registers an admin token's hash, unless admin tokens were retired: then nothing, and false. */
  addAdminTokenHash(hash: string): Promise<boolean>;
  /** Whether `hash` is a registered admin token's (never, once they are retired). */
  hasAdminTokenHash(hash: string): Promise<boolean>;
  /**
   * Retires every admin token for good: their hashes go, and no replica registers one again (its
   * `<dataDir>/admin-token` authenticates no one). How many were registered.
   */
  retireAdminTokens(at: number): Promise<number>;
  /** When admin tokens were retired; undefined while they are in use. */
  adminTokensRetiredAt(): Promise<number | undefined>;

  close(): Promise<void>;
}
