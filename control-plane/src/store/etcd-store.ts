import { randomBytes } from 'node:crypto';
import { Etcd3, isRecoverableError, Range, type IOptions } from 'etcd3';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { isRetry } from './join-token-retry.ts';
import type {
  AgentRecord,
  AdminCertificateRecord,
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
  StoreEvent,
  StoreWatch,
  TicketSecretRecord,
} from './store.ts';

/** The values one baselines transaction carries at most (etcd's request limit is 1.5 MiB by default). */
const BASELINE_TXN_BYTES = 1024 * 1024;
/** No value is larger: etcd refuses a request over 1.5 MiB (its default --max-request-bytes). */
const MAX_VALUE_BYTES = 1.5 * 1024 * 1024;
/** Keys one read of a prefix returns at most: a list is read a page at a time. */
const LIST_PAGE_KEYS = 64;
/** The largest answer the client takes: a page of the largest values (grpc-js takes 4 MiB by default, under three of them). */
const MAX_RECEIVE_BYTES = LIST_PAGE_KEYS * MAX_VALUE_BYTES + 1024 * 1024;

/** Where the control plane's keys live in etcd (one prefix: several meshes, or other users, can share a cluster). */
export const DEFAULT_ETCD_PREFIX = '/airlock/';

export interface EtcdStoreOptions {
  /** `http(s)://host:port` of each member. */
  readonly endpoints: readonly string[];
  readonly prefix?: string;
  /** PEM: the CA of the members' certificates; with cert and key, a client certificate too. */
  readonly tls?: { readonly caPem: string; readonly certPem?: string; readonly keyPem?: string };
  readonly auth?: { readonly username: string; readonly password: string };
  /** Per-request deadline: a store call never hangs a route (default 5 s). */
  readonly timeoutMs?: number;
}

/** A compare-and-set that lost this many times in a row is a conflict the caller sees. */
const MAX_CAS_ATTEMPTS = 16;

/** Versions sort as keys: zero-padded. */
const versionKey = (v: number): string => String(v).padStart(10, '0');

interface StoredJoinToken {
  readonly hash: string;
  readonly spiffeId: string;
  readonly expiresAt: number;
  readonly createdAt?: number;
  readonly usedAt?: number;
  readonly usedBy?: string;
  readonly revokedAt?: number;
  readonly labels: Readonly<Record<string, string>>;
}

const listing = (t: StoredJoinToken): JoinTokenListing => ({
  hash: t.hash,
  spiffeId: t.spiffeId,
  expiresAt: t.expiresAt,
  createdAt: t.createdAt,
  usedAt: t.usedAt,
  revokedAt: t.revokedAt,
  labels: t.labels,
});

/**
 * The store on etcd, for any number of control-plane replicas: each record is one JSON value under
 * the prefix; what must be atomic (a join token's single use, a policy version with its audit
 * event, a CA ring step, an API token's unique name) is one transaction that compares the
 * revisions it read. etcd errors become StoreUnavailable (503 store_unavailable).
 */
export class EtcdStore implements Store {
  readonly #client: Etcd3;
  readonly #prefix: string;

  private constructor(client: Etcd3, prefix: string) {
    this.#client = client;
    this.#prefix = prefix;
  }

  /** Connects and checks the cluster answers (a clear error at start, not at the first call). */
  static async open(o: EtcdStoreOptions): Promise<EtcdStore> {
    const options: IOptions = {
      hosts: [...o.endpoints],
      grpcOptions: { 'grpc.max_receive_message_length': MAX_RECEIVE_BYTES },
      defaultCallOptions: () => ({ deadline: Date.now() + (o.timeoutMs ?? 5000) }),
      ...(o.tls === undefined
        ? {}
        : {
            credentials: {
              rootCertificate: Buffer.from(o.tls.caPem),
              ...(o.tls.certPem === undefined || o.tls.keyPem === undefined ? {} : { certChain: Buffer.from(o.tls.certPem), privateKey: Buffer.from(o.tls.keyPem) }),
            },
          }),
      ...(o.auth === undefined ? {} : { auth: { username: o.auth.username, password: o.auth.password } }),
    };
    const store = new EtcdStore(new Etcd3(options), o.prefix ?? DEFAULT_ETCD_PREFIX);
    try {
      await store.#client.maintenance.status();
    } catch (err) {
      store.#client.close();
      throw new AirlockError(ErrorCode.StoreUnavailable, `cannot reach etcd at ${o.endpoints.join(', ')}: ${errorMessage(err)}`, { cause: err });
    }
    return store;
  }

  async ping(): Promise<void> {
    const status = await this.#call(() => this.#client.maintenance.status());
    // A member that answers but has lost its cluster's leader cannot commit anything.
    if (status.leader === '0') throw new AirlockError(ErrorCode.StoreUnavailable, 'etcd has no leader (no quorum)');
  }

  async watch(onEvent: (event: StoreEvent) => void, onTrouble: (why: string) => void): Promise<StoreWatch> {
    const watcher = await this.#call(() => this.#client.watch().prefix(this.#prefix).create());
    watcher.on('put', (kv) => {
      const event = eventOf(kv.key.toString().slice(this.#prefix.length), kv.value.toString());
      if (event !== undefined) onEvent(event);
    });
    // The renew-now request ends by deletion.
    watcher.on('delete', (kv) => {
      const name = kv.key.toString().slice(this.#prefix.length);
      if (name === 'ca-renew-now') onEvent({ kind: 'ca-ring' });
      if (name.startsWith('quarantines/')) onEvent({ kind: 'quarantine' });
      if (name.startsWith('baselines/')) onEvent({ kind: 'baseline', spiffeId: name.slice('baselines/'.length) });
    });
    // etcd3 resumes a broken watch from the last revision it delivered: nothing is skipped.
    watcher.on('disconnected', (err) => onTrouble(`the store watch was cut (${err.message}); resuming`));
    watcher.on('error', (err) => onTrouble(`the store watch failed: ${err.message}`));
    return { close: () => watcher.cancel() };
  }

  async upsertAgent(agent: AgentRecord): Promise<void> {
    await this.#update<AgentRecord>(`agents/${agent.spiffeId}`, (before) => ({ ...agent, labels: agent.labels ?? before?.labels ?? {} }));
  }

  async getAgent(spiffeId: string): Promise<AgentRecord | undefined> {
    return this.#get<AgentRecord>(`agents/${spiffeId}`);
  }

  async listAgents(): Promise<AgentRecord[]> {
    return this.#list<AgentRecord>('agents/');
  }

  async insertJoinToken(token: JoinTokenRecord): Promise<void> {
    const stored: StoredJoinToken = { hash: token.hash, spiffeId: token.spiffeId, expiresAt: token.expiresAt, ...(token.createdAt === undefined ? {} : { createdAt: token.createdAt }), labels: token.labels ?? {} };
    await this.#create(`join-tokens/${token.hash}`, stored, `a join token with this hash exists`);
  }

  async consumeJoinToken(hash: string, now: number, claim: JoinTokenClaim): Promise<ConsumeResult> {
    let result: ConsumeResult = { ok: false, reason: 'unknown' };
    await this.#update<StoredJoinToken>(`join-tokens/${hash}`, (t) => {
      if (t === undefined) result = { ok: false, reason: 'unknown' };
      else if (t.revokedAt !== undefined) result = { ok: false, reason: 'revoked' };
      else if (t.usedAt !== undefined) result = isRetry(t.usedAt, t.usedBy, now, claim) ? { ok: true, spiffeId: t.spiffeId, labels: t.labels, retry: true } : { ok: false, reason: 'used' };
      else if (t.expiresAt <= now) result = { ok: false, reason: 'expired' };
      else {
        result = { ok: true, spiffeId: t.spiffeId, labels: t.labels };
        return { ...t, usedAt: now, usedBy: claim.claimant };
      }
      return undefined;
    });
    return result;
  }

  async listJoinTokens(): Promise<JoinTokenListing[]> {
    const all = await this.#list<StoredJoinToken>('join-tokens/');
    return all.map(listing).sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0) || b.expiresAt - a.expiresAt);
  }

  async findJoinTokens(hashPrefix: string): Promise<JoinTokenListing[]> {
    return (await this.#list<StoredJoinToken>(`join-tokens/${hashPrefix}`)).map(listing);
  }

  async revokeJoinTokens(hashPrefix: string, now: number): Promise<JoinTokenListing[]> {
    for (const t of await this.findJoinTokens(hashPrefix)) {
      await this.#update<StoredJoinToken>(`join-tokens/${t.hash}`, (current) => (current === undefined || current.revokedAt !== undefined ? undefined : { ...current, revokedAt: now }));
    }
    return this.findJoinTokens(hashPrefix);
  }

  async recordCertificate(cert: IssuedCertificate): Promise<void> {
    await this.#put(`certificates/${cert.spiffeId}#${cert.serial}`, cert);
  }

  async pruneCertificates(expiredBefore: number): Promise<number> {
    let pruned = 0;
    // Replicas pruning at once delete the same keys: deleting a deleted key is harmless.
    for (const [key, cert] of await this.#entries<IssuedCertificate>('certificates/')) {
      if (cert.notAfter >= expiredBefore) continue;
      await this.#call(() => this.#client.delete().key(this.#key(key)).exec());
      pruned++;
    }
    return pruned;
  }

  async listCertificates(spiffeId: string): Promise<IssuedCertificate[]> {
    return (await this.#list<IssuedCertificate>(`certificates/${spiffeId}#`)).sort((a, b) => a.issuedAt - b.issuedAt);
  }

  async unexpiredCertificatesOf(issuer: string, now: number): Promise<{ count: number; lastNotAfter: number | undefined }> {
    const mine = (await this.#list<IssuedCertificate>('certificates/')).filter((c) => c.issuer === issuer && c.notAfter > now);
    return { count: mine.length, lastNotAfter: mine.length === 0 ? undefined : Math.max(...mine.map((c) => c.notAfter)) };
  }

  async countIdentitiesAwaitingRenewal(issuer: string, since: number, now: number): Promise<number> {
    const all = await this.#list<IssuedCertificate>('certificates/');
    const renewed = new Set(all.filter((c) => c.issuer === issuer && c.issuedAt >= since).map((c) => c.spiffeId));
    return new Set(all.filter((c) => c.notAfter > now && c.issuer !== issuer && !renewed.has(c.spiffeId)).map((c) => c.spiffeId)).size;
  }

  async assignUnknownIssuer(issuer: string): Promise<void> {
    for (const [key, cert] of await this.#entries<IssuedCertificate>('certificates/')) {
      if (cert.issuer === undefined) await this.#update<IssuedCertificate>(key, (c) => (c === undefined || c.issuer !== undefined ? undefined : { ...c, issuer }));
    }
  }

  async listCaRoots(): Promise<CaRootRecord[]> {
    return (await this.#list<CaRootRecord>('ca-roots/')).sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
  }

  async saveCaRoots(roots: readonly CaRootRecord[]): Promise<void> {
    // As the SQLite store: a known root keeps its certificate and key file; only its state moves.
    await this.#transact(async () => {
      const reads = await Promise.all(roots.map(async (r) => ({ r, key: `ca-roots/${r.id}`, before: await this.#read(`ca-roots/${r.id}`) })));
      return reads.map(({ r, key, before }) => {
        const stored = before.value as CaRootRecord | undefined;
        return { key, modRevision: before.modRevision, value: stored === undefined ? r : { ...stored, state: r.state, updatedAt: r.updatedAt } };
      });
    });
  }

  async initCaRoots(first: CaRootRecord): Promise<CaRootRecord[]> {
    // The marker key is claimed with the first root: of two replicas starting at once, one ring.
    const marker = this.#key('ca-ring');
    await this.#call(() =>
      this.#client
        .if(marker, 'Version', '==', 0)
        .then(this.#client.put(marker).value(first.id), this.#client.put(this.#key(`ca-roots/${first.id}`)).value(JSON.stringify(first)))
        .commit(),
    );
    return this.listCaRoots();
  }

  async listTicketSecrets(): Promise<TicketSecretRecord[]> {
    return this.#newest<TicketSecretRecord>('ticket-secrets/', 2);
  }

  async addTicketSecret(next: TicketSecretRecord): Promise<boolean> {
    const key = this.#key(`ticket-secrets/${versionKey(next.keyId)}`);
    const older = next.keyId > 2 ? [this.#client.delete().inRange({ start: this.#key('ticket-secrets/'), end: this.#key(`ticket-secrets/${versionKey(next.keyId - 1)}`) })] : [];
    const txn = await this.#call(() =>
      this.#client
        .if(key, 'Version', '==', 0)
        .then(this.#client.put(key).value(JSON.stringify(next)), ...older)
        .commit(),
    );
    return txn.succeeded;
  }

  async getRenewNowRequest(): Promise<RenewNowRequest | undefined> {
    return this.#get<RenewNowRequest>('ca-renew-now');
  }

  async setRenewNowRequest(request: RenewNowRequest | undefined): Promise<void> {
    if (request === undefined) await this.#call(() => this.#client.delete().key(this.#key('ca-renew-now')).exec());
    else await this.#put('ca-renew-now', request);
  }

  async revokeIdentity(spiffeId: string, revokedAt: number): Promise<void> {
    // Idempotent: the first revocation time is kept.
    await this.#update<RevokedIdentity>(`revoked/${spiffeId}`, (before) => (before === undefined ? { spiffeId, revokedAt } : undefined));
  }

  async listRevokedIdentities(): Promise<RevokedIdentity[]> {
    return (await this.#list<RevokedIdentity>('revoked/')).sort((a, b) => a.revokedAt - b.revokedAt);
  }

  async quarantine(record: QuarantineRecord): Promise<void> {
    await this.#put(`quarantines/${record.spiffeId}`, record);
  }

  async release(spiffeId: string): Promise<QuarantineRecord | undefined> {
    const res = await this.#call(() => this.#client.delete().key(this.#key(`quarantines/${spiffeId}`)).getPrevious());
    const prev = res[0];
    return prev === undefined ? undefined : (JSON.parse(prev.value.toString()) as QuarantineRecord);
  }

  async listQuarantines(): Promise<QuarantineRecord[]> {
    return (await this.#list<QuarantineRecord>('quarantines/')).sort((a, b) => a.since - b.since || (a.spiffeId < b.spiffeId ? -1 : 1));
  }

  async putToolPin(pin: ToolPinRecord): Promise<void> {
    // Both parts encoded: a host:port or SPIFFE ID has "/" and ":" in it, a tool name may too.
    await this.#put(`tool-pins/${encodeURIComponent(pin.server)}/${encodeURIComponent(pin.tool)}`, pin);
  }

  async listToolPins(): Promise<ToolPinRecord[]> {
    return (await this.#list<ToolPinRecord>('tool-pins/')).sort((a, b) => (a.server === b.server ? (a.tool < b.tool ? -1 : a.tool > b.tool ? 1 : 0) : a.server < b.server ? -1 : 1));
  }

  async latestPolicyVersion(): Promise<PolicyVersionRecord | undefined> {
    const [latest] = await this.#newest<PolicyVersionRecord>('policy-versions/', 1);
    return latest;
  }

  async getPolicyVersion(version: number): Promise<PolicyVersionRecord | undefined> {
    return this.#get<PolicyVersionRecord>(`policy-versions/${versionKey(version)}`);
  }

  async listPolicyVersions(limit: number): Promise<Omit<PolicyVersionRecord, 'entries'>[]> {
    return (await this.#newest<PolicyVersionRecord>('policy-versions/', limit)).map(({ entries: _entries, ...rest }) => rest);
  }

  async appendPolicyVersion(record: PolicyVersionRecord, audit: AuditEventRecord): Promise<void> {
    // Both keys or neither, and only if no replica stored this version first.
    const key = this.#key(`policy-versions/${versionKey(record.version)}`);
    const txn = await this.#call(() =>
      this.#client
        .if(key, 'Version', '==', 0)
        .then(this.#client.put(key).value(JSON.stringify(record)), this.#client.put(this.#key(auditKey(audit))).value(JSON.stringify(audit)))
        .commit(),
    );
    if (!txn.succeeded) throw new AirlockError(ErrorCode.Conflict, `policy version ${record.version} was stored by another change first; read the policy again`);
  }

  async addApiToken(token: ApiTokenRecord): Promise<void> {
    // The name is unique: an index key claimed in the same transaction.
    const key = this.#key(`api-tokens/${token.hash}`);
    const name = this.#key(`api-token-names/${token.name}`);
    const txn = await this.#call(() =>
      this.#client
        .if(key, 'Version', '==', 0)
        .and(name, 'Version', '==', 0)
        .then(this.#client.put(key).value(JSON.stringify(token)), this.#client.put(name).value(token.hash))
        .commit(),
    );
    if (!txn.succeeded) throw new AirlockError(ErrorCode.Conflict, `an API token named "${token.name}" exists`);
  }

  async findApiToken(hash: string): Promise<ApiTokenRecord | undefined> {
    return this.#get<ApiTokenRecord>(`api-tokens/${hash}`);
  }

  async listApiTokens(): Promise<ApiTokenRecord[]> {
    return (await this.#list<ApiTokenRecord>('api-tokens/')).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async revokeApiToken(name: string, at: number): Promise<ApiTokenRecord | undefined> {
    // The name index holds the hash as it is (not JSON).
    const hash = await this.#call(() => this.#client.get(this.#key(`api-token-names/${name}`)).string());
    if (hash === null) return undefined;
    await this.#update<ApiTokenRecord>(`api-tokens/${hash}`, (t) => (t === undefined || t.revokedAt !== undefined ? undefined : { ...t, revokedAt: at }));
    return this.findApiToken(hash);
  }

  async addAdminCertificate(cert: AdminCertificateRecord): Promise<void> {
    await this.#create(`admin-certs/${cert.serial}`, cert, `an admin certificate with serial ${cert.serial} exists`);
  }

  async findAdminCertificate(serial: string): Promise<AdminCertificateRecord | undefined> {
    return this.#get<AdminCertificateRecord>(`admin-certs/${serial}`);
  }

  async revokeAdminCertificates(name: string, at: number): Promise<number> {
    const mine = (await this.#list<AdminCertificateRecord>('admin-certs/')).filter((c) => c.name === name);
    for (const c of mine) {
      await this.#update<AdminCertificateRecord>(`admin-certs/${c.serial}`, (cur) => (cur === undefined || cur.revokedAt !== undefined ? undefined : { ...cur, revokedAt: at }));
    }
    return mine.length;
  }

  async addAuditEvent(event: AuditEventRecord): Promise<void> {
    await this.#put(auditKey(event), event);
  }

  async listAuditEvents(limit: number): Promise<AuditEventRecord[]> {
    return this.#newest<AuditEventRecord>('audit/', limit);
  }

  async putBaselines(records: readonly BaselineRecord[]): Promise<void> {
    // In transactions of at most 100 puts (etcd's default limit is 128 operations per transaction) and
    // about 1 MiB of values (etcd refuses a request over 1.5 MiB by default); the comparison always holds.
    const put = (chunk: readonly { key: string; value: string }[]) =>
      this.#call(() => this.#client.if(this.#key('baselines/'), 'Version', '>', -1).then(...chunk.map((r) => this.#client.put(r.key).value(r.value))).commit());
    let chunk: { key: string; value: string }[] = [];
    let bytes = 0;
    for (const r of records) {
      const value = JSON.stringify(r);
      // etcd's limit is in bytes: a path or tool name may be any UTF-8.
      const size = Buffer.byteLength(value);
      if (chunk.length > 0 && (chunk.length === 100 || bytes + size > BASELINE_TXN_BYTES)) {
        await put(chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push({ key: this.#key(`baselines/${r.spiffeId}`), value });
      bytes += size;
    }
    if (chunk.length > 0) await put(chunk);
  }

  async listBaselines(): Promise<BaselineRecord[]> {
    return (await this.#list<BaselineRecord>('baselines/')).sort((a, b) => (a.spiffeId < b.spiffeId ? -1 : a.spiffeId > b.spiffeId ? 1 : 0));
  }

  async deleteBaseline(spiffeId: string): Promise<boolean> {
    const res = await this.#call(() => this.#client.delete().key(this.#key(`baselines/${spiffeId}`)).exec());
    return Number(res.deleted) > 0;
  }

  async saveIncident(record: IncidentRecord): Promise<void> {
    await this.#put(`incidents/${record.id}`, record);
  }

  async getIncident(id: string): Promise<IncidentRecord | undefined> {
    return this.#get<IncidentRecord>(`incidents/${id}`);
  }

  async listIncidents(limit: number): Promise<IncidentRecord[]> {
    return this.#newest<IncidentRecord>('incidents/', limit);
  }

  async openIncidentOf(target: string): Promise<IncidentRecord | undefined> {
    // Read on quarantine and release only (admin actions), never on a call.
    const open = (await this.#list<IncidentRecord>('incidents/')).filter((r) => r.target === target && r.releasedAt === undefined);
    return open.sort((a, b) => (a.id < b.id ? 1 : -1))[0];
  }

  async addAdminTokenHash(hash: string): Promise<boolean> {
    // In one transaction with the retirement mark: a replica starting while another retires the
    // tokens cannot slip its own in after the deletion.
    const retired = this.#key('admin-tokens-retired');
    const txn = await this.#call(() =>
      this.#client
        .if(retired, 'Version', '==', 0)
        .then(this.#client.put(this.#key(`admin-tokens/${hash}`)).value('{}'))
        .commit(),
    );
    return txn.succeeded;
  }

  async hasAdminTokenHash(hash: string): Promise<boolean> {
    return (await this.#get<object>(`admin-tokens/${hash}`)) !== undefined;
  }

  async retireAdminTokens(at: number): Promise<number> {
    const retired = this.#key('admin-tokens-retired');
    const prefix = this.#key('admin-tokens/');
    const registered = await this.#call(() => this.#client.getAll().prefix(prefix).count());
    // The mark (first retirement time kept) and the deletion in one transaction.
    await this.#call(() =>
      this.#client
        .if(retired, 'Version', '==', 0)
        .then(this.#client.put(retired).value(JSON.stringify({ at })), this.#client.delete().prefix(prefix))
        .else(this.#client.delete().prefix(prefix))
        .commit(),
    );
    return registered;
  }

  async adminTokensRetiredAt(): Promise<number | undefined> {
    return (await this.#get<{ at: number }>('admin-tokens-retired'))?.at;
  }

  close(): Promise<void> {
    this.#client.close();
    return Promise.resolve();
  }

  #key(name: string): string {
    return `${this.#prefix}${name}`;
  }

  /** Runs one etcd call; a failure of the store (not of a comparison) is StoreUnavailable. */
  async #call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof AirlockError) throw err;
      // The etcd client stops asking after repeated failures (cockatiel's circuit breaker): etcd did not refuse anything.
      if ((err as { isBrokenCircuitError?: unknown }).isBrokenCircuitError === true) {
        throw new AirlockError(ErrorCode.StoreUnavailable, 'etcd is unavailable: it failed repeatedly, and is asked again in a few seconds', { cause: err });
      }
      const why = isRecoverableError(err as Error) ? 'etcd is unavailable' : 'etcd refused the request';
      throw new AirlockError(ErrorCode.StoreUnavailable, `${why}: ${errorMessage(err)}`, { cause: err });
    }
  }

  async #get<T>(name: string): Promise<T | undefined> {
    return (await this.#read(name)).value as T | undefined;
  }

  /** The value and the revision it was last changed at (0: absent), for a compare-and-set. */
  async #read(name: string): Promise<{ value: unknown; modRevision: string }> {
    const res = await this.#call(() => this.#client.get(this.#key(name)).exec());
    const kv = res.kvs[0];
    return kv === undefined ? { value: undefined, modRevision: '0' } : { value: JSON.parse(kv.value.toString()) as unknown, modRevision: kv.mod_revision };
  }

  /**
   * Every key under `prefix`, a page of LIST_PAGE_KEYS at a time (one answer for all of them outgrew
   * the client's receive limit: large baselines), each page read at the first one's revision, so the
   * list is one snapshot as a single read was.
   */
  async #entries<T>(prefix: string): Promise<[string, T][]> {
    const { end } = Range.prefix(this.#key(prefix));
    let start = Buffer.from(this.#key(prefix));
    let revision: string | undefined;
    const entries: [string, T][] = [];
    for (;;) {
      const page = this.#client.getAll().inRange(new Range(start, end)).limit(LIST_PAGE_KEYS);
      const res = await this.#call(() => (revision === undefined ? page : page.revision(revision)).exec());
      for (const kv of res.kvs) entries.push([kv.key.toString().slice(this.#prefix.length), JSON.parse(kv.value.toString()) as T]);
      const last = res.kvs.at(-1);
      if (!res.more || last === undefined) return entries;
      revision ??= res.header.revision;
      // The next key after the last one read.
      start = Buffer.concat([last.key, Buffer.from([0])]);
    }
  }

  async #list<T>(prefix: string): Promise<T[]> {
    return (await this.#entries<T>(prefix)).map(([, v]) => v);
  }

  /** The last `limit` values under `prefix` by key, newest (highest key) first. */
  async #newest<T>(prefix: string, limit: number): Promise<T[]> {
    const res = await this.#call(() => this.#client.getAll().prefix(this.#key(prefix)).sort('Key', 'Descend').limit(limit).exec());
    return res.kvs.map((kv) => JSON.parse(kv.value.toString()) as T);
  }

  async #put(name: string, value: unknown): Promise<void> {
    await this.#call(() => this.#client.put(this.#key(name)).value(JSON.stringify(value)).exec());
  }

  /** Puts `value` only where nothing is stored yet; else Conflict with `taken`. */
  async #create(name: string, value: unknown, taken: string): Promise<void> {
    const key = this.#key(name);
    const txn = await this.#call(() => this.#client.if(key, 'Version', '==', 0).then(this.#client.put(key).value(JSON.stringify(value))).commit());
    if (!txn.succeeded) throw new AirlockError(ErrorCode.Conflict, taken);
  }

  /**
   * Read-modify-write of one key: `change` gets what is stored and returns the new value, or
   * undefined to write nothing. Written only if the key did not change since it was read; else
   * read again (another replica won the race), so exactly one of two racing changes applies.
   */
  async #update<T>(name: string, change: (before: T | undefined) => T | undefined): Promise<void> {
    await this.#transact(async () => {
      const before = await this.#read(name);
      const after = change(before.value as T | undefined);
      return after === undefined ? [] : [{ key: name, modRevision: before.modRevision, value: after }];
    });
  }

  /** Writes all of `writes` in one transaction if none of those keys changed since it was read; else reads again. */
  async #transact(read: () => Promise<{ key: string; modRevision: string; value: unknown }[]>): Promise<void> {
    for (let attempt = 1; attempt <= MAX_CAS_ATTEMPTS; attempt++) {
      const writes = await read();
      if (writes.length === 0) return;
      const txn = await this.#call(() => {
        let builder = this.#client.if(this.#key(writes[0]?.key ?? ''), 'Mod', '==', writes[0]?.modRevision ?? '0');
        for (const w of writes.slice(1)) builder = builder.and(this.#key(w.key), 'Mod', '==', w.modRevision);
        return builder.then(...writes.map((w) => this.#client.put(this.#key(w.key)).value(JSON.stringify(w.value)))).commit();
      });
      if (txn.succeeded) return;
    }
    throw new AirlockError(ErrorCode.Conflict, 'the store kept changing under this request; try again');
  }
}

/** The change a put under the prefix stands for, if a replica follows that kind. */
function eventOf(name: string, value: string): StoreEvent | undefined {
  if (name.startsWith('agents/')) return { kind: 'agent', agent: JSON.parse(value) as AgentRecord };
  if (name.startsWith('revoked/')) return { kind: 'revocation', revoked: JSON.parse(value) as RevokedIdentity };
  if (name.startsWith('ca-roots/') || name === 'ca-renew-now') return { kind: 'ca-ring' };
  if (name.startsWith('quarantines/')) return { kind: 'quarantine' };
  if (name.startsWith('ticket-secrets/')) return { kind: 'ticket-secrets' };
  if (name.startsWith('tool-pins/')) return { kind: 'tool-pin', pin: JSON.parse(value) as ToolPinRecord };
  if (name.startsWith('baselines/')) {
    const record = JSON.parse(value) as BaselineRecord;
    return { kind: 'baseline', spiffeId: record.spiffeId, record };
  }
  if (name.startsWith('policy-versions/')) return { kind: 'policy-version', version: (JSON.parse(value) as PolicyVersionRecord).version };
  return undefined;
}

/** Audit events sort by time, then a random suffix (two at the same millisecond on two replicas). */
function auditKey(e: AuditEventRecord): string {
  return `audit/${String(e.at).padStart(15, '0')}-${randomBytes(6).toString('hex')}`;
}
