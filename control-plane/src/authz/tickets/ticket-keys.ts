import { hkdfSync, randomBytes } from 'node:crypto';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { TicketMacKey, type MacKey, type TicketKey } from '@airlock/common/ticket';
import { openKey, sealKey, type KeyEncryptionKey } from '../../ca/key-encryption.ts';
import type { Store, TicketSecretRecord } from '../../store/store.ts';

/**
 * A new secret issues only once it is this old: by then the sidecars of every replica have been
 * pushed the keys derived from it (a ticket under a key a sidecar lacks is not lost: that call asks).
 */
export const ISSUE_AFTER_MS = 1000;
/** Derived keys held at most (one per destination identity and key id); past it the cache starts again. */
const MAX_CACHED_KEYS = 100_000;
const HKDF_SALT = Buffer.from('airlock ticket key v1');

export interface TicketKeysOptions {
  readonly store: Store;
  /** Seals the secrets in the store when set (as the CA ring's keys); else they are stored in base64. */
  readonly kek?: KeyEncryptionKey;
  readonly now?: () => number;
}

/** A derived key: its bytes (pushed to the destination's sidecar) and its pads, which tickets are MACed with. */
interface DerivedKey extends TicketKey {
  readonly macKey: TicketMacKey;
}

interface Secret {
  readonly keyId: number;
  readonly secret: Buffer;
  readonly createdAt: number;
}

/** The key of one destination identity under one secret: HKDF-SHA256, the identity as info. */
export function deriveTicketKey(secret: Buffer, destination: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, HKDF_SALT, Buffer.from(destination, 'utf8'), 32));
}

/**
 * The ticket keys: master secrets in the store (so every replica derives the same per-destination
 * keys), the newest two held in memory (the current and the previous, for a rotation's overlap).
 */
export class TicketKeys {
  readonly #o: TicketKeysOptions;
  readonly #now: () => number;
  #secrets: readonly Secret[] = [];
  readonly #derived = new Map<string, DerivedKey>();
  readonly #listeners = new Set<() => void>();

  private constructor(o: TicketKeysOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  /** Reads the secrets, making the first if the store holds none (two replicas starting at once make one). */
  static async open(o: TicketKeysOptions): Promise<TicketKeys> {
    const keys = new TicketKeys(o);
    if ((await o.store.listTicketSecrets()).length === 0) await keys.#add(1);
    await keys.reload();
    return keys;
  }

  /** The key tickets to `destination` are issued under now: from the newest secret once ISSUE_AFTER_MS old (or if it is the only one). */
  issuing(destination: string): { readonly keyId: number; readonly key: MacKey } {
    const [newest, previous] = this.#secrets;
    if (newest === undefined) throw new AirlockError(ErrorCode.Internal, 'no ticket secret loaded');
    const s = previous !== undefined && this.#now() - newest.createdAt < ISSUE_AFTER_MS ? previous : newest;
    const derived = this.#derive(s, destination);
    return { keyId: derived.keyId, key: derived.macKey };
  }

  /** The keys that verify tickets to `identity` (current and previous): for that identity's sidecar alone. */
  keysOf(identity: string): TicketKey[] {
    return this.#secrets.map((s) => {
      const { keyId, key } = this.#derive(s, identity);
      return { keyId, key };
    });
  }

  /** Adds the next secret if the newest is `everyMs` old (or older); true when this call added it. */
  async rotateIfDue(everyMs: number): Promise<boolean> {
    const newest = this.#secrets[0];
    if (newest !== undefined && this.#now() - newest.createdAt < everyMs) return false;
    const added = await this.#add((newest?.keyId ?? 0) + 1);
    await this.reload();
    return added;
  }

  /** Reads the secrets again (at start, and when a replica rotated); listeners hear of a change. */
  async reload(): Promise<void> {
    const records = await this.#o.store.listTicketSecrets();
    const next = records.map((r) => this.#open(r));
    if (next.map((s) => s.keyId).join() === this.#secrets.map((s) => s.keyId).join()) return;
    this.#secrets = next;
    this.#derived.clear();
    for (const l of this.#listeners) l();
  }

  /** Calls `listener` after each change of the secrets; returns an unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The newest secret's key id (0 before any). */
  newestKeyId(): number {
    return this.#secrets[0]?.keyId ?? 0;
  }

  #derive(s: Secret, destination: string): DerivedKey {
    const cacheKey = `${s.keyId}\0${destination}`;
    let derived = this.#derived.get(cacheKey);
    if (derived === undefined) {
      if (this.#derived.size >= MAX_CACHED_KEYS) this.#derived.clear();
      const key = deriveTicketKey(s.secret, destination);
      derived = { keyId: s.keyId, key, macKey: new TicketMacKey(key) };
      this.#derived.set(cacheKey, derived);
    }
    return derived;
  }

  async #add(keyId: number): Promise<boolean> {
    const secret = randomBytes(32).toString('base64');
    const kek = this.#o.kek;
    return this.#o.store.addTicketSecret({ keyId, secret: kek === undefined ? secret : sealKey(kek, sealedName(keyId), secret), createdAt: this.#now() });
  }

  #open(r: TicketSecretRecord): Secret {
    let text = r.secret;
    if (text.startsWith('v1:')) {
      if (this.#o.kek === undefined) throw new AirlockError(ErrorCode.Config, 'the ticket secrets in the store are sealed: give caKeyEncryptionKeyFile (the key-encryption key every replica shares)');
      text = openKey(this.#o.kek, sealedName(r.keyId), text);
    }
    const secret = Buffer.from(text, 'base64');
    if (secret.length !== 32) throw new AirlockError(ErrorCode.Config, `ticket secret ${r.keyId} in the store is not 32 bytes`);
    return { keyId: r.keyId, secret, createdAt: r.createdAt };
  }
}

/**
 * Rotates on a timer (every replica checks; the store lets one add each secret, the others follow
 * its watch). Checked at a tenth of the period, at most every minute. Returns the stop function.
 */
export function rotateTicketKeys(keys: TicketKeys, everyMs: number, log: Logger): () => void {
  const timer = setInterval(
    () => {
      keys.rotateIfDue(everyMs).then(
        (added) => {
          if (added) log.info({ keyId: keys.newestKeyId() }, 'ticket key rotated');
        },
        (err: unknown) => log.warn({ error: errorMessage(err) }, 'cannot rotate the ticket key'),
      );
    },
    Math.min(Math.max(everyMs / 10, 100), 60_000),
  );
  timer.unref();
  return () => clearInterval(timer);
}

/** Bound as the seal's associated data: a sealed secret moved to another key id does not open. */
function sealedName(keyId: number): string {
  return `ticket-secret-${keyId}`;
}
