import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TicketMacKey } from '@airlock/common/ticket';
import { SqliteStore } from '../../store/sqlite-store.ts';
import { deriveTicketKey, ISSUE_AFTER_MS, TicketKeys } from './ticket-keys.ts';

const B = 'spiffe://airlock.test/ns/demo/sa/bob';
const C = 'spiffe://airlock.test/ns/demo/sa/carol';

describe('TicketKeys', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-tickets-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('derives the same key per identity on every replica of one store, a different one per identity', async () => {
    const store = SqliteStore.open(dir);
    try {
      const [one, two] = [await TicketKeys.open({ store }), await TicketKeys.open({ store })];
      expect(one.keysOf(B)).toEqual(two.keysOf(B));
      expect(one.keysOf(B)[0]?.keyId).toBe(1);
      expect(one.keysOf(B)[0]?.key.equals(one.keysOf(C)[0]?.key ?? Buffer.alloc(0))).toBe(false);
      const issuing = one.issuing(B);
      expect(issuing.keyId).toBe(two.keysOf(B)[0]?.keyId);
      const pads = issuing.key instanceof TicketMacKey ? issuing.key : new TicketMacKey(issuing.key);
      expect(pads.inner.equals(new TicketMacKey(two.keysOf(B)[0]?.key ?? Buffer.alloc(0)).inner)).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('rotates with overlap: the new key is pushed at once, issues after ISSUE_AFTER_MS, and the previous stays accepted', async () => {
    const store = SqliteStore.open(dir);
    const now = { t: 1_000_000 };
    try {
      const keys = await TicketKeys.open({ store, now: () => now.t });
      let changes = 0;
      keys.onChange(() => changes++);
      expect(await keys.rotateIfDue(60_000)).toBe(false);
      now.t += 60_000;
      expect(await keys.rotateIfDue(60_000)).toBe(true);
      expect(changes).toBe(1);
      expect(keys.keysOf(B).map((k) => k.keyId)).toEqual([2, 1]);
      expect(keys.issuing(B).keyId).toBe(1);
      now.t += ISSUE_AFTER_MS;
      expect(keys.issuing(B).keyId).toBe(2);
      now.t += 60_000;
      await keys.rotateIfDue(60_000);
      expect(keys.keysOf(B).map((k) => k.keyId)).toEqual([3, 2]);
      // Another replica follows the store.
      const other = await TicketKeys.open({ store, now: () => now.t });
      expect(other.keysOf(B)).toEqual(keys.keysOf(B));
    } finally {
      await store.close();
    }
  });

  it('seals the secrets in the store with the key-encryption key when one is given', async () => {
    const store = SqliteStore.open(dir);
    const kek = { key: randomBytes(32) };
    try {
      const keys = await TicketKeys.open({ store, kek });
      const [stored] = await store.listTicketSecrets();
      expect(stored?.secret.startsWith('v1:')).toBe(true);
      await expect(TicketKeys.open({ store })).rejects.toThrow(/sealed/);
      await expect(TicketKeys.open({ store, kek: { key: randomBytes(32) } })).rejects.toThrow();
      expect((await TicketKeys.open({ store, kek })).keysOf(B)).toEqual(keys.keysOf(B));
      expect(deriveTicketKey(Buffer.alloc(32), B)).toHaveLength(32);
    } finally {
      await store.close();
    }
  });
});
