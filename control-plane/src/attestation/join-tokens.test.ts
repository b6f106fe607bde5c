import { describe, expect, it } from 'vitest';
import { SqliteStore } from '../store/sqlite-store.ts';
import { JOIN_TOKEN_RETRY_MS, JoinTokenError, JoinTokens } from './join-tokens.ts';

const ID = 'spiffe://airlock.test/ns/demo/sa/researcher';
const SIDECAR = { publicKey: Buffer.from('key of the sidecar'), inboundAddress: '127.0.0.1:15001' };

function setup(): { tokens: JoinTokens; clock: { now: number }; store: SqliteStore } {
  const store = new SqliteStore(':memory:');
  const clock = { now: 1_000_000 };
  return { tokens: new JoinTokens(store, 'airlock.test', () => clock.now), clock, store };
}

async function refusal(attempt: Promise<unknown>): Promise<string | undefined> {
  try {
    await attempt;
  } catch (err) {
    if (err instanceof JoinTokenError) return err.reason;
    throw err;
  }
  return undefined;
}

describe('JoinTokens', () => {
  it('makes a random base64url token, stored only as a hash, usable once', async () => {
    const { tokens } = setup();
    const created = await tokens.createJoinToken(ID, 60_000);
    expect(created.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(created.expiresAt.getTime()).toBe(1_060_000);
    expect(await tokens.consumeJoinToken(created.token, SIDECAR)).toEqual({ spiffeId: ID, labels: {}, retry: false });
    expect(await refusal(tokens.consumeJoinToken(created.token, { ...SIDECAR, publicKey: Buffer.from('another key') }))).toBe('used');
  });

  it('answers the same claimant again within the retry window (its answer was lost), nobody else, and nobody after', async () => {
    const { tokens, clock } = setup();
    const created = await tokens.createJoinToken(ID, 60_000);
    await tokens.consumeJoinToken(created.token, SIDECAR);
    clock.now += JOIN_TOKEN_RETRY_MS;
    expect(await tokens.consumeJoinToken(created.token, SIDECAR)).toEqual({ spiffeId: ID, labels: {}, retry: true });
    // Another address with the same key would move the agent's inbound address: refused.
    expect(await refusal(tokens.consumeJoinToken(created.token, { ...SIDECAR, inboundAddress: '10.0.0.9:15001' }))).toBe('used');
    expect(await refusal(tokens.consumeJoinToken(created.token, { ...SIDECAR, publicKey: Buffer.from('stolen token, own key') }))).toBe('used');
    clock.now += 1;
    expect(await refusal(tokens.consumeJoinToken(created.token, SIDECAR))).toBe('used');
  });

  it('never answers a revoked token again, even to its claimant', async () => {
    const { tokens } = setup();
    const created = await tokens.createJoinToken(ID, 60_000);
    await tokens.consumeJoinToken(created.token, SIDECAR);
    await tokens.revoke(created.id);
    expect(await refusal(tokens.consumeJoinToken(created.token, SIDECAR))).toBe('revoked');
  });

  it('gives the joining agent the token\'s labels', async () => {
    const { tokens } = setup();
    const created = await tokens.createJoinToken(ID, 60_000, { team: 'research', 'example.com/tier': 'gold' });
    expect(created.labels).toEqual({ team: 'research', 'example.com/tier': 'gold' });
    expect((await tokens.consumeJoinToken(created.token, SIDECAR)).labels).toEqual({ team: 'research', 'example.com/tier': 'gold' });
  });

  it.each([
    [{ 'bad key!': 'x' }, /label key "bad key!"/],
    [{ team: 'has space' }, /label value "has space"/],
    [{ team: 'x'.repeat(64) }, /label value/],
    [{ '-team': 'x' }, /label key/],
    [{ 'Example.com/team': 'x' }, /prefix must be a lowercase DNS subdomain/],
    [{ 'kubernetes.io/namespace': 'prod' }, /set by Kubernetes attestation only/],
    [Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])), /at most 32 labels/],
  ])('refuses bad labels %#', async (labels, message) => {
    const { tokens } = setup();
    await expect(tokens.createJoinToken(ID, 60_000, labels)).rejects.toThrow(message);
    expect(await tokens.list()).toHaveLength(0);
  });

  it('refuses unknown and expired tokens with typed reasons', async () => {
    const { tokens, clock } = setup();
    const created = await tokens.createJoinToken(ID, 60_000);
    expect(await refusal(tokens.consumeJoinToken('x'.repeat(43), SIDECAR))).toBe('unknown');
    clock.now += 60_000;
    expect(await refusal(tokens.consumeJoinToken(created.token, SIDECAR))).toBe('expired');
  });

  it('refuses foreign trust domains, bad IDs and out-of-range lifetimes', async () => {
    const { tokens } = setup();
    await expect(tokens.createJoinToken('spiffe://evil.test/ns/a/sa/b')).rejects.toThrow(/trust domain/);
    await expect(tokens.createJoinToken('not-an-id')).rejects.toThrow(/not a valid SPIFFE ID/);
    await expect(tokens.createJoinToken(ID, 86_400_001)).rejects.toThrow(/lifetime/);
  });

  it('lists tokens without their secret: id, identity, status and expiry', async () => {
    const { tokens, clock } = setup();
    const used = await tokens.createJoinToken(ID, 60_000);
    await tokens.consumeJoinToken(used.token, SIDECAR);
    clock.now += 1;
    const unused = await tokens.createJoinToken('spiffe://airlock.test/ns/demo/sa/planner', 60_000);
    const listed = await tokens.list();
    expect(listed.map((t) => [t.id, t.status])).toEqual([
      [unused.id, 'unused'],
      [used.id, 'used'],
    ]);
    expect(JSON.stringify(listed)).not.toContain(used.token);
    expect(JSON.stringify(listed)).not.toContain(unused.token);
    clock.now += 60_000;
    expect((await tokens.list())[0]?.status).toBe('expired');
  });

  it('revokes a token by id so that it no longer attests; a wrong or ambiguous id changes nothing', async () => {
    const { tokens } = setup();
    const created = await tokens.createJoinToken(ID, 60_000);
    const other = await tokens.createJoinToken(ID, 60_000);
    await expect(tokens.revoke('0'.repeat(16) === created.id ? '1'.repeat(16) : '0'.repeat(16))).rejects.toThrow(/no join token/);
    await expect(tokens.revoke('abc')).rejects.toThrow(/8 to 64 hex/);
    await expect(tokens.revoke("'; DROP TABLE join_tokens; --")).rejects.toThrow(/hex/);
    expect(await tokens.revoke(created.id.toUpperCase())).toMatchObject({ alreadyRevoked: false, token: { id: created.id, status: 'revoked' } });
    expect((await tokens.revoke(created.id)).alreadyRevoked).toBe(true);
    expect(await refusal(tokens.consumeJoinToken(created.token, SIDECAR))).toBe('revoked');
    // The other token is untouched.
    expect((await tokens.consumeJoinToken(other.token, SIDECAR)).spiffeId).toBe(ID);
  });

  it('refuses an id that is a prefix of several tokens, revoking none', async () => {
    const { tokens, store } = setup();
    await store.insertJoinToken({ hash: `abcdef01${'1'.repeat(56)}`, spiffeId: ID, expiresAt: 2_000_000 });
    await store.insertJoinToken({ hash: `abcdef01${'2'.repeat(56)}`, spiffeId: ID, expiresAt: 2_000_000 });
    await expect(tokens.revoke('abcdef01')).rejects.toThrow(/2 join tokens have ids starting abcdef01/);
    expect((await tokens.list()).map((t) => t.status)).toEqual(['unused', 'unused']);
    expect((await tokens.revoke('abcdef012')).token.status).toBe('revoked');
  });
});
