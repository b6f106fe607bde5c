// node:sqlite is synchronous; the methods are async because the Store contract is (etcd is a network away).
/* eslint-disable @typescript-eslint/require-await */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { isRetry } from './join-token-retry.ts';
import type {
  AgentRecord,
  AdminCertificateRecord,
  AdminRole,
  ApiTokenRecord,
  AuditEventRecord,
  CaRootRecord,
  ConsumeResult,
  JoinTokenClaim,
  IssuedCertificate,
  JoinTokenListing,
  JoinTokenRecord,
  PolicyVersionRecord,
  QuarantineRecord,
  IncidentRecord,
  RenewNowRequest,
  RevokedIdentity,
  ToolPinRecord,
  BaselineRecord,
  Store,
  StoreWatch,
  TicketSecretRecord,
} from './store.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS agents (
  spiffe_id TEXT PRIMARY KEY,
  inbound_address TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS join_tokens (
  hash TEXT PRIMARY KEY,
  spiffe_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER
);
CREATE TABLE IF NOT EXISTS certificates (
  serial TEXT PRIMARY KEY,
  spiffe_id TEXT NOT NULL,
  not_after INTEGER NOT NULL,
  issued_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_by_spiffe_id ON certificates (spiffe_id);
CREATE TABLE IF NOT EXISTS revoked_identities (
  spiffe_id TEXT PRIMARY KEY,
  revoked_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantines (
  spiffe_id TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  actor TEXT NOT NULL,
  since INTEGER NOT NULL,
  until INTEGER
);
CREATE TABLE IF NOT EXISTS tool_pins (
  server TEXT NOT NULL,
  tool TEXT NOT NULL,
  hash TEXT NOT NULL,
  pinned_at INTEGER NOT NULL,
  pinned_by TEXT NOT NULL,
  pending TEXT,
  PRIMARY KEY (server, tool)
);
CREATE TABLE IF NOT EXISTS admin_tokens (
  hash TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS admin_tokens_retired (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_versions (
  version INTEGER PRIMARY KEY,
  entries TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
  hash TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_certificates (
  serial TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  not_after INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ca_renew_now (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  root_id TEXT NOT NULL,
  requested_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ca_roots (
  id TEXT PRIMARY KEY,
  cert_pem TEXT NOT NULL,
  key_file TEXT NOT NULL,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ticket_secrets (
  key_id INTEGER PRIMARY KEY,
  secret TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
  id TEXT PRIMARY KEY,
  target TEXT NOT NULL,
  released_at INTEGER,
  record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_by_target ON incidents (target);
CREATE TABLE IF NOT EXISTS baselines (
  spiffe_id TEXT PRIMARY KEY,
  record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  detail TEXT NOT NULL
);
`;

interface PolicyVersionRow {
  version: number;
  entries: string;
  created_at: number;
  actor: string;
  action: string;
  summary: string;
}

const policyVersionOf = (r: PolicyVersionRow): PolicyVersionRecord => ({
  version: r.version,
  entries: r.entries,
  createdAt: r.created_at,
  actor: r.actor,
  action: r.action,
  summary: r.summary,
});

interface AgentRow {
  spiffe_id: string;
  inbound_address: string;
  updated_at: number;
  labels: string | null;
}

/** Labels are kept as JSON text; a row from before labels has none. */
function labelsOf(text: string | null | undefined): Record<string, string> {
  if (text === null || text === undefined || text === '') return {};
  return JSON.parse(text) as Record<string, string>;
}

function agentOf(r: AgentRow): AgentRecord {
  return { spiffeId: r.spiffe_id, inboundAddress: r.inbound_address, updatedAt: r.updated_at, labels: labelsOf(r.labels) };
}

/** Columns added after the first release: added to an older database at open. */
const ADDED_COLUMNS: readonly { table: string; column: string; type: string }[] = [
  { table: 'certificates', column: 'issuer', type: 'TEXT' },
  { table: 'join_tokens', column: 'created_at', type: 'INTEGER' },
  { table: 'join_tokens', column: 'revoked_at', type: 'INTEGER' },
  { table: 'join_tokens', column: 'labels', type: 'TEXT' },
  { table: 'join_tokens', column: 'used_by', type: 'TEXT' },
  { table: 'agents', column: 'labels', type: 'TEXT' },
  { table: 'ca_roots', column: 'sealed_key', type: 'TEXT' },
  { table: 'api_tokens', column: 'revoked_at', type: 'INTEGER' },
  { table: 'admin_certificates', column: 'revoked_at', type: 'INTEGER' },
];

interface JoinTokenRow {
  hash: string;
  spiffe_id: string;
  expires_at: number;
  created_at: number | null;
  used_at: number | null;
  revoked_at: number | null;
  labels: string | null;
}

const joinTokenOf = (r: JoinTokenRow): JoinTokenListing => ({
  hash: r.hash,
  spiffeId: r.spiffe_id,
  expiresAt: r.expires_at,
  createdAt: r.created_at ?? undefined,
  usedAt: r.used_at ?? undefined,
  revokedAt: r.revoked_at ?? undefined,
  labels: labelsOf(r.labels),
});

interface CaRootRow {
  id: string;
  cert_pem: string;
  key_file: string;
  sealed_key: string | null;
  state: CaRootRecord['state'];
  created_at: number;
  updated_at: number;
}

interface CertificateRow {
  serial: string;
  spiffe_id: string;
  not_after: number;
  issued_at: number;
  issuer: string | null;
}

interface QuarantineRow {
  spiffe_id: string;
  reason: string;
  actor: string;
  since: number;
  until: number | null;
}

const quarantineOf = (r: QuarantineRow): QuarantineRecord => ({ spiffeId: r.spiffe_id, reason: r.reason, actor: r.actor, since: r.since, ...(r.until === null ? {} : { until: r.until }) });

interface ToolPinRow {
  server: string;
  tool: string;
  hash: string;
  pinned_at: number;
  pinned_by: string;
  pending: string | null;
}

const toolPinOf = (r: ToolPinRow): ToolPinRecord => ({
  server: r.server,
  tool: r.tool,
  hash: r.hash,
  pinnedAt: r.pinned_at,
  pinnedBy: r.pinned_by,
  ...(r.pending === null ? {} : { pending: JSON.parse(r.pending) as NonNullable<ToolPinRecord['pending']> }),
});

/** Runs an INSERT; a unique key already taken is Conflict (as on etcd), anything else stays as thrown. */
function conflictIfTaken(insert: () => unknown, taken: string): void {
  try {
    insert();
  } catch (err) {
    if ((err as { errstr?: unknown }).errstr === 'constraint failed') throw new AirlockError(ErrorCode.Conflict, taken, { cause: err });
    throw err;
  }
}

/** The embedded store: one SQLite file `<dataDir>/airlock.db` (one replica, zero setup). */
export class SqliteStore implements Store {
  readonly #db: DatabaseSync;
  readonly #upsertAgent: StatementSync;
  readonly #getAgent: StatementSync;
  readonly #insertToken: StatementSync;
  readonly #consumeToken: StatementSync;
  readonly #tokenState: StatementSync;
  readonly #pruneCerts: StatementSync;
  readonly #insertCert: StatementSync;
  readonly #listCerts: StatementSync;
  readonly #revoke: StatementSync;
  readonly #listRevoked: StatementSync;
  readonly #insertAdmin: StatementSync;
  readonly #getAdmin: StatementSync;
  readonly #listAgents: StatementSync;
  readonly #latestPolicy: StatementSync;
  readonly #getPolicy: StatementSync;
  readonly #listPolicies: StatementSync;
  readonly #insertPolicy: StatementSync;
  readonly #insertApiToken: StatementSync;
  readonly #findApiToken: StatementSync;
  readonly #revokeAdminCerts: StatementSync;
  readonly #listApiTokens: StatementSync;
  readonly #revokeApiToken: StatementSync;
  readonly #apiTokenByName: StatementSync;
  readonly #insertAdminCert: StatementSync;
  readonly #findAdminCert: StatementSync;
  readonly #insertAudit: StatementSync;
  readonly #listAudit: StatementSync;
  readonly #listTokens: StatementSync;
  readonly #revokeTokens: StatementSync;
  readonly #tokensByPrefix: StatementSync;
  readonly #unexpiredOf: StatementSync;
  readonly #listRoots: StatementSync;
  readonly #saveRoot: StatementSync;
  readonly #assignIssuer: StatementSync;

  constructor(path: string) {
    this.#db = new DatabaseSync(path);
    this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;');
    this.#db.exec(SCHEMA);
    for (const c of ADDED_COLUMNS) {
      const has = (this.#db.prepare(`PRAGMA table_info(${c.table})`).all() as { name: string }[]).some((col) => col.name === c.column);
      if (!has) this.#db.exec(`ALTER TABLE ${c.table} ADD COLUMN ${c.column} ${c.type}`);
    }
    this.#upsertAgent = this.#db.prepare(
      // NULL labels (a renewal) keep the stored ones.
      `INSERT INTO agents (spiffe_id, inbound_address, updated_at, labels) VALUES (?, ?, ?, ?)
       ON CONFLICT (spiffe_id) DO UPDATE SET inbound_address = excluded.inbound_address, updated_at = excluded.updated_at,
         labels = COALESCE(excluded.labels, agents.labels)`,
    );
    this.#getAgent = this.#db.prepare('SELECT spiffe_id, inbound_address, updated_at, labels FROM agents WHERE spiffe_id = ?');
    this.#insertToken = this.#db.prepare('INSERT INTO join_tokens (hash, spiffe_id, expires_at, used_at, created_at, labels) VALUES (?, ?, ?, NULL, ?, ?)');
    // One statement decides and marks: the WHERE clause is the single-use guarantee.
    this.#consumeToken = this.#db.prepare(
      'UPDATE join_tokens SET used_at = ?, used_by = ? WHERE hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ? RETURNING spiffe_id, labels',
    );
    this.#tokenState = this.#db.prepare('SELECT spiffe_id, labels, used_at, used_by, expires_at, revoked_at FROM join_tokens WHERE hash = ?');
    this.#listTokens = this.#db.prepare('SELECT hash, spiffe_id, expires_at, created_at, used_at, revoked_at, labels FROM join_tokens ORDER BY created_at DESC, expires_at DESC');
    // substr, not LIKE: a prefix from the API must not be read as a pattern.
    this.#tokensByPrefix = this.#db.prepare('SELECT hash, spiffe_id, expires_at, created_at, used_at, revoked_at, labels FROM join_tokens WHERE substr(hash, 1, length(?)) = ?');
    this.#revokeTokens = this.#db.prepare('UPDATE join_tokens SET revoked_at = ? WHERE substr(hash, 1, length(?)) = ? AND revoked_at IS NULL');
    this.#pruneCerts = this.#db.prepare('DELETE FROM certificates WHERE not_after < ?');
    this.#insertCert = this.#db.prepare('INSERT INTO certificates (serial, spiffe_id, not_after, issued_at, issuer) VALUES (?, ?, ?, ?, ?)');
    this.#listCerts = this.#db.prepare(
      'SELECT serial, spiffe_id, not_after, issued_at, issuer FROM certificates WHERE spiffe_id = ? ORDER BY issued_at',
    );
    this.#unexpiredOf = this.#db.prepare('SELECT count(*) AS n, max(not_after) AS last FROM certificates WHERE issuer = ? AND not_after > ?');
    this.#listRoots = this.#db.prepare('SELECT id, cert_pem, key_file, sealed_key, state, created_at, updated_at FROM ca_roots ORDER BY created_at, id');
    this.#saveRoot = this.#db.prepare(
      `INSERT INTO ca_roots (id, cert_pem, key_file, sealed_key, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
    );
    this.#assignIssuer = this.#db.prepare('UPDATE certificates SET issuer = ? WHERE issuer IS NULL');
    this.#revoke = this.#db.prepare('INSERT OR IGNORE INTO revoked_identities (spiffe_id, revoked_at) VALUES (?, ?)');
    this.#listRevoked = this.#db.prepare('SELECT spiffe_id, revoked_at FROM revoked_identities ORDER BY revoked_at');
    this.#insertAdmin = this.#db.prepare('INSERT OR IGNORE INTO admin_tokens (hash) VALUES (?)');
    this.#getAdmin = this.#db.prepare('SELECT 1 AS found FROM admin_tokens WHERE hash = ?');
    this.#listAgents = this.#db.prepare('SELECT spiffe_id, inbound_address, updated_at, labels FROM agents ORDER BY spiffe_id');
    this.#latestPolicy = this.#db.prepare('SELECT * FROM policy_versions ORDER BY version DESC LIMIT 1');
    this.#getPolicy = this.#db.prepare('SELECT * FROM policy_versions WHERE version = ?');
    this.#listPolicies = this.#db.prepare(
      "SELECT version, '' AS entries, created_at, actor, action, summary FROM policy_versions ORDER BY version DESC LIMIT ?",
    );
    this.#insertPolicy = this.#db.prepare(
      'INSERT INTO policy_versions (version, entries, created_at, actor, action, summary) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.#insertApiToken = this.#db.prepare('INSERT INTO api_tokens (hash, name, role, created_at) VALUES (?, ?, ?, ?)');
    this.#findApiToken = this.#db.prepare('SELECT hash, name, role, created_at, revoked_at FROM api_tokens WHERE hash = ?');
    this.#listApiTokens = this.#db.prepare('SELECT hash, name, role, created_at, revoked_at FROM api_tokens ORDER BY name');
    this.#revokeApiToken = this.#db.prepare('UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?');
    this.#apiTokenByName = this.#db.prepare('SELECT hash, name, role, created_at, revoked_at FROM api_tokens WHERE name = ?');
    this.#insertAdminCert = this.#db.prepare('INSERT INTO admin_certificates (serial, name, role, created_at, not_after) VALUES (?, ?, ?, ?, ?)');
    this.#findAdminCert = this.#db.prepare('SELECT serial, name, role, created_at, not_after, revoked_at FROM admin_certificates WHERE serial = ?');
    this.#revokeAdminCerts = this.#db.prepare('UPDATE admin_certificates SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?');
    this.#insertAudit = this.#db.prepare('INSERT INTO audit_events (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)');
    this.#listAudit = this.#db.prepare('SELECT at, actor, action, target, detail FROM audit_events ORDER BY id DESC LIMIT ?');
  }

  static open(dataDir: string): SqliteStore {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    return withDiskErrorsAsUnavailable(new SqliteStore(join(dataDir, 'airlock.db')));
  }

  /** A file on this machine: reachable while the process runs. */
  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get();
  }

  /** One replica: every change is this process's own, already in its memory. */
  async watch(): Promise<StoreWatch> {
    return { close: () => Promise.resolve() };
  }

  async upsertAgent(agent: AgentRecord): Promise<void> {
    this.#upsertAgent.run(agent.spiffeId, agent.inboundAddress, agent.updatedAt, agent.labels === undefined ? null : JSON.stringify(agent.labels));
  }

  async getAgent(spiffeId: string): Promise<AgentRecord | undefined> {
    const row = this.#getAgent.get(spiffeId) as AgentRow | undefined;
    return row === undefined ? undefined : agentOf(row);
  }

  async insertJoinToken(token: JoinTokenRecord): Promise<void> {
    this.#insertToken.run(token.hash, token.spiffeId, token.expiresAt, token.createdAt ?? null, JSON.stringify(token.labels ?? {}));
  }

  async consumeJoinToken(hash: string, now: number, claim: JoinTokenClaim): Promise<ConsumeResult> {
    const won = this.#consumeToken.get(now, claim.claimant, hash, now) as { spiffe_id: string; labels: string | null } | undefined;
    if (won !== undefined) return { ok: true, spiffeId: won.spiffe_id, labels: labelsOf(won.labels) };
    // Lost: only now find out why, for the error and the metric (or whether it is a retry).
    const state = this.#tokenState.get(hash) as
      | { spiffe_id: string; labels: string | null; used_at: number | null; used_by: string | null; expires_at: number; revoked_at: number | null }
      | undefined;
    if (state === undefined) return { ok: false, reason: 'unknown' };
    if (state.revoked_at !== null) return { ok: false, reason: 'revoked' };
    if (state.used_at !== null) {
      return isRetry(state.used_at, state.used_by ?? undefined, now, claim) ? { ok: true, spiffeId: state.spiffe_id, labels: labelsOf(state.labels), retry: true } : { ok: false, reason: 'used' };
    }
    return { ok: false, reason: 'expired' };
  }

  async listJoinTokens(): Promise<JoinTokenListing[]> {
    return (this.#listTokens.all() as unknown as JoinTokenRow[]).map(joinTokenOf);
  }

  async findJoinTokens(hashPrefix: string): Promise<JoinTokenListing[]> {
    return (this.#tokensByPrefix.all(hashPrefix, hashPrefix) as unknown as JoinTokenRow[]).map(joinTokenOf);
  }

  async revokeJoinTokens(hashPrefix: string, now: number): Promise<JoinTokenListing[]> {
    this.#revokeTokens.run(now, hashPrefix, hashPrefix);
    return this.findJoinTokens(hashPrefix);
  }

  async recordCertificate(cert: IssuedCertificate): Promise<void> {
    this.#insertCert.run(cert.serial, cert.spiffeId, cert.notAfter, cert.issuedAt, cert.issuer ?? null);
  }

  async pruneCertificates(expiredBefore: number): Promise<number> {
    return Number(this.#pruneCerts.run(expiredBefore).changes);
  }

  async unexpiredCertificatesOf(issuer: string, now: number): Promise<{ count: number; lastNotAfter: number | undefined }> {
    const row = this.#unexpiredOf.get(issuer, now) as { n: number; last: number | null };
    return { count: row.n, lastNotAfter: row.last ?? undefined };
  }

  async listCaRoots(): Promise<CaRootRecord[]> {
    return (this.#listRoots.all() as unknown as CaRootRow[]).map((r) => ({
      id: r.id,
      certPem: r.cert_pem,
      keyFile: r.key_file,
      ...(r.sealed_key === null ? {} : { sealedKey: r.sealed_key }),
      state: r.state,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
    }));
  }

  async saveCaRoots(roots: readonly CaRootRecord[]): Promise<void> {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      for (const r of roots) this.#saveRoot.run(r.id, r.certPem, r.keyFile, r.sealedKey ?? null, r.state, r.createdAt, r.updatedAt);
      this.#db.exec('COMMIT');
    } catch (err) {
      this.#db.exec('ROLLBACK');
      throw err;
    }
  }

  async initCaRoots(first: CaRootRecord): Promise<CaRootRecord[]> {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const { n } = this.#db.prepare('SELECT count(*) AS n FROM ca_roots').get() as { n: number };
      if (n === 0) this.#saveRoot.run(first.id, first.certPem, first.keyFile, first.sealedKey ?? null, first.state, first.createdAt, first.updatedAt);
      this.#db.exec('COMMIT');
    } catch (err) {
      this.#db.exec('ROLLBACK');
      throw err;
    }
    return this.listCaRoots();
  }

  async assignUnknownIssuer(issuer: string): Promise<void> {
    this.#assignIssuer.run(issuer);
  }

  async listTicketSecrets(): Promise<TicketSecretRecord[]> {
    const rows = this.#db.prepare('SELECT key_id, secret, created_at FROM ticket_secrets ORDER BY key_id DESC LIMIT 2').all() as { key_id: number; secret: string; created_at: number }[];
    return rows.map((r) => ({ keyId: r.key_id, secret: r.secret, createdAt: r.created_at }));
  }

  async addTicketSecret(next: TicketSecretRecord): Promise<boolean> {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const { changes } = this.#db.prepare('INSERT OR IGNORE INTO ticket_secrets (key_id, secret, created_at) VALUES (?, ?, ?)').run(next.keyId, next.secret, next.createdAt);
      if (changes === 1) this.#db.prepare('DELETE FROM ticket_secrets WHERE key_id < ?').run(next.keyId - 1);
      this.#db.exec('COMMIT');
      return changes === 1;
    } catch (err) {
      this.#db.exec('ROLLBACK');
      throw err;
    }
  }

  async getRenewNowRequest(): Promise<RenewNowRequest | undefined> {
    const row = this.#db.prepare('SELECT root_id, requested_at FROM ca_renew_now WHERE id = 1').get() as { root_id: string; requested_at: number } | undefined;
    return row === undefined ? undefined : { rootId: row.root_id, requestedAt: row.requested_at };
  }

  async setRenewNowRequest(request: RenewNowRequest | undefined): Promise<void> {
    if (request === undefined) this.#db.prepare('DELETE FROM ca_renew_now').run();
    else this.#db.prepare('INSERT OR REPLACE INTO ca_renew_now (id, root_id, requested_at) VALUES (1, ?, ?)').run(request.rootId, request.requestedAt);
  }

  async countIdentitiesAwaitingRenewal(issuer: string, since: number, now: number): Promise<number> {
    const row = this.#db
      .prepare(
        `SELECT COUNT(DISTINCT c.spiffe_id) AS n FROM certificates c
         WHERE c.not_after > ? AND c.issuer IS NOT ?
           AND NOT EXISTS (SELECT 1 FROM certificates r WHERE r.spiffe_id = c.spiffe_id AND r.issuer = ? AND r.issued_at >= ?)`,
      )
      .get(now, issuer, issuer, since) as { n: number };
    return row.n;
  }

  async listCertificates(spiffeId: string): Promise<IssuedCertificate[]> {
    return (this.#listCerts.all(spiffeId) as unknown as CertificateRow[]).map((r) => ({
      serial: r.serial,
      spiffeId: r.spiffe_id,
      notAfter: r.not_after,
      issuedAt: r.issued_at,
      ...(r.issuer === null ? {} : { issuer: r.issuer }),
    }));
  }

  async revokeIdentity(spiffeId: string, revokedAt: number): Promise<void> {
    this.#revoke.run(spiffeId, revokedAt);
  }

  async listRevokedIdentities(): Promise<RevokedIdentity[]> {
    return (this.#listRevoked.all() as unknown as { spiffe_id: string; revoked_at: number }[]).map((r) => ({ spiffeId: r.spiffe_id, revokedAt: r.revoked_at }));
  }

  async quarantine(r: QuarantineRecord): Promise<void> {
    this.#db.prepare('INSERT OR REPLACE INTO quarantines (spiffe_id, reason, actor, since, until) VALUES (?, ?, ?, ?, ?)').run(r.spiffeId, r.reason, r.actor, r.since, r.until ?? null);
  }

  async release(spiffeId: string): Promise<QuarantineRecord | undefined> {
    const row = this.#db.prepare('DELETE FROM quarantines WHERE spiffe_id = ? RETURNING spiffe_id, reason, actor, since, until').get(spiffeId) as QuarantineRow | undefined;
    return row === undefined ? undefined : quarantineOf(row);
  }

  async listQuarantines(): Promise<QuarantineRecord[]> {
    return (this.#db.prepare('SELECT spiffe_id, reason, actor, since, until FROM quarantines ORDER BY since, spiffe_id').all() as unknown as QuarantineRow[]).map(quarantineOf);
  }

  async putToolPin(p: ToolPinRecord): Promise<void> {
    this.#db
      .prepare('INSERT OR REPLACE INTO tool_pins (server, tool, hash, pinned_at, pinned_by, pending) VALUES (?, ?, ?, ?, ?, ?)')
      .run(p.server, p.tool, p.hash, p.pinnedAt, p.pinnedBy, p.pending === undefined ? null : JSON.stringify(p.pending));
  }

  async listToolPins(): Promise<ToolPinRecord[]> {
    return (this.#db.prepare('SELECT server, tool, hash, pinned_at, pinned_by, pending FROM tool_pins ORDER BY server, tool').all() as unknown as ToolPinRow[]).map(toolPinOf);
  }

  async listAgents(): Promise<AgentRecord[]> {
    return (this.#listAgents.all() as unknown as AgentRow[]).map(agentOf);
  }

  async latestPolicyVersion(): Promise<PolicyVersionRecord | undefined> {
    const row = this.#latestPolicy.get() as PolicyVersionRow | undefined;
    return row === undefined ? undefined : policyVersionOf(row);
  }

  async getPolicyVersion(version: number): Promise<PolicyVersionRecord | undefined> {
    const row = this.#getPolicy.get(version) as PolicyVersionRow | undefined;
    return row === undefined ? undefined : policyVersionOf(row);
  }

  async listPolicyVersions(limit: number): Promise<Omit<PolicyVersionRecord, 'entries'>[]> {
    return (this.#listPolicies.all(limit) as unknown as PolicyVersionRow[]).map((r) => ({
      version: r.version,
      createdAt: r.created_at,
      actor: r.actor,
      action: r.action,
      summary: r.summary,
    }));
  }

  async appendPolicyVersion(r: PolicyVersionRecord, audit: AuditEventRecord): Promise<void> {
    // Both rows or neither: a version without its audit event would be a change nobody recorded.
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      conflictIfTaken(() => this.#insertPolicy.run(r.version, r.entries, r.createdAt, r.actor, r.action, r.summary), `policy version ${r.version} was stored by another change first; read the policy again`);
      this.#insertAudit.run(audit.at, audit.actor, audit.action, audit.target, audit.detail);
      this.#db.exec('COMMIT');
    } catch (err) {
      this.#db.exec('ROLLBACK');
      throw err;
    }
  }

  async addApiToken(t: ApiTokenRecord): Promise<void> {
    conflictIfTaken(() => this.#insertApiToken.run(t.hash, t.name, t.role, t.createdAt), `an API token named "${t.name}" exists`);
  }

  async findApiToken(hash: string): Promise<ApiTokenRecord | undefined> {
    const row = this.#findApiToken.get(hash) as ApiTokenRow | undefined;
    return row === undefined ? undefined : apiTokenOf(row);
  }

  async listApiTokens(): Promise<ApiTokenRecord[]> {
    return (this.#listApiTokens.all() as unknown as ApiTokenRow[]).map(apiTokenOf);
  }

  async revokeApiToken(name: string, at: number): Promise<ApiTokenRecord | undefined> {
    this.#revokeApiToken.run(at, name);
    const row = this.#apiTokenByName.get(name) as ApiTokenRow | undefined;
    return row === undefined ? undefined : apiTokenOf(row);
  }

  async addAdminCertificate(c: AdminCertificateRecord): Promise<void> {
    this.#insertAdminCert.run(c.serial, c.name, c.role, c.createdAt, c.notAfter);
  }

  async findAdminCertificate(serial: string): Promise<AdminCertificateRecord | undefined> {
    const row = this.#findAdminCert.get(serial) as { serial: string; name: string; role: AdminRole; created_at: number; not_after: number; revoked_at: number | null } | undefined;
    return row === undefined ? undefined : { serial: row.serial, name: row.name, role: row.role, createdAt: row.created_at, notAfter: row.not_after, ...(row.revoked_at === null ? {} : { revokedAt: row.revoked_at }) };
  }

  async revokeAdminCertificates(name: string, at: number): Promise<number> {
    return Number(this.#revokeAdminCerts.run(at, name).changes);
  }

  async addAuditEvent(e: AuditEventRecord): Promise<void> {
    this.#insertAudit.run(e.at, e.actor, e.action, e.target, e.detail);
  }

  async listAuditEvents(limit: number): Promise<AuditEventRecord[]> {
    return this.#listAudit.all(limit) as unknown as AuditEventRecord[];
  }

  async putBaselines(records: readonly BaselineRecord[]): Promise<void> {
    const put = this.#db.prepare('INSERT OR REPLACE INTO baselines (spiffe_id, record) VALUES (?, ?)');
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      for (const r of records) put.run(r.spiffeId, JSON.stringify(r));
      this.#db.exec('COMMIT');
    } catch (err) {
      this.#db.exec('ROLLBACK');
      throw err;
    }
  }

  async listBaselines(): Promise<BaselineRecord[]> {
    return (this.#db.prepare('SELECT record FROM baselines ORDER BY spiffe_id').all() as { record: string }[]).map((r) => JSON.parse(r.record) as BaselineRecord);
  }

  async deleteBaseline(spiffeId: string): Promise<boolean> {
    return Number(this.#db.prepare('DELETE FROM baselines WHERE spiffe_id = ?').run(spiffeId).changes) > 0;
  }

  async saveIncident(r: IncidentRecord): Promise<void> {
    this.#db.prepare('INSERT OR REPLACE INTO incidents (id, target, released_at, record) VALUES (?, ?, ?, ?)').run(r.id, r.target, r.releasedAt ?? null, JSON.stringify(r));
  }

  async getIncident(id: string): Promise<IncidentRecord | undefined> {
    const row = this.#db.prepare('SELECT record FROM incidents WHERE id = ?').get(id) as { record: string } | undefined;
    return row === undefined ? undefined : (JSON.parse(row.record) as IncidentRecord);
  }

  async listIncidents(limit: number): Promise<IncidentRecord[]> {
    return (this.#db.prepare('SELECT record FROM incidents ORDER BY id DESC LIMIT ?').all(limit) as { record: string }[]).map((r) => JSON.parse(r.record) as IncidentRecord);
  }

  async openIncidentOf(target: string): Promise<IncidentRecord | undefined> {
    const row = this.#db.prepare('SELECT record FROM incidents WHERE target = ? AND released_at IS NULL ORDER BY id DESC LIMIT 1').get(target) as { record: string } | undefined;
    return row === undefined ? undefined : (JSON.parse(row.record) as IncidentRecord);
  }

  async addAdminTokenHash(hash: string): Promise<boolean> {
    if ((await this.adminTokensRetiredAt()) !== undefined) return false;
    this.#insertAdmin.run(hash);
    return true;
  }

  async hasAdminTokenHash(hash: string): Promise<boolean> {
    return this.#getAdmin.get(hash) !== undefined;
  }

  async retireAdminTokens(at: number): Promise<number> {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      this.#db.prepare('INSERT OR IGNORE INTO admin_tokens_retired (id, at) VALUES (1, ?)').run(at);
      const removed = Number(this.#db.prepare('DELETE FROM admin_tokens').run().changes);
      this.#db.exec('COMMIT');
      return removed;
    } catch (err) {
      this.#db.exec('ROLLBACK');
      throw err;
    }
  }

  async adminTokensRetiredAt(): Promise<number | undefined> {
    const row = this.#db.prepare('SELECT at FROM admin_tokens_retired WHERE id = 1').get() as { at: number } | undefined;
    return row?.at;
  }

  async close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
  }
}

interface ApiTokenRow {
  hash: string;
  name: string;
  role: ApiTokenRecord['role'];
  created_at: number;
  revoked_at: number | null;
}

function apiTokenOf(r: ApiTokenRow): ApiTokenRecord {
  return { hash: r.hash, name: r.name, role: r.role, createdAt: r.created_at, ...(r.revoked_at === null ? {} : { revokedAt: r.revoked_at }) };
}

// SQLite's primary result codes (the low byte of an extended code) that mean the disk, not Airlock.
const SQLITE_IOERR = 10;
const SQLITE_FULL = 13;

/** A full or failing disk under the store is the store being unavailable (503 / UNAVAILABLE, with why), not an internal error. */
export function diskErrorAsUnavailable(err: unknown): unknown {
  if (typeof err !== 'object' || err === null || err instanceof AirlockError) return err;
  const e = err as { errcode?: unknown; code?: unknown; message?: unknown };
  const primary = typeof e.errcode === 'number' ? e.errcode & 0xff : undefined;
  const why = typeof e.message === 'string' ? e.message : 'no message';
  if (primary === SQLITE_FULL || e.code === 'ENOSPC') return new AirlockError(ErrorCode.StoreUnavailable, `the store cannot write: its disk is full (${why})`, { cause: err });
  if (primary === SQLITE_IOERR || e.code === 'EIO') return new AirlockError(ErrorCode.StoreUnavailable, `the store cannot read or write its disk (${why})`, { cause: err });
  return err;
}

/** `store` with every method's disk errors mapped by diskErrorAsUnavailable (each Store method is async). */
function withDiskErrorsAsUnavailable(store: SqliteStore): SqliteStore {
  return new Proxy(store, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      // Called on the target itself: the methods use private fields, which a proxy does not have.
      return (...args: unknown[]): unknown => {
        try {
          const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
          return result instanceof Promise
            ? result.catch((err: unknown) => {
                throw diskErrorAsUnavailable(err);
              })
            : result;
        } catch (err) {
          throw diskErrorAsUnavailable(err);
        }
      };
    },
  });
}
