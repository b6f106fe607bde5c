import { describe, expect, it } from 'vitest';
import { SqliteStore } from '../store/sqlite-store.ts';
import { JoinTokenError, JoinTokens } from './join-tokens.ts';

const ID = 'spiffe://airlock.test/ns/demo/sa/researcher';

function setup(): { tokens: JoinTokens; clock: { now: number }; store: SqliteStore } {
  const store = new SqliteStore(':memory:');
  const clock = { now: 1_000_000 };
  return { tokens: new JoinTokens(store, 'airlock.test', () => clock.now), clock, store };
}

function refusal(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof JoinTokenError) return err.reason;
    throw err;
  }
  return undefined;
}

describe('JoinTokens', () => {
  it('makes a random base64url token, stored only as a hash, usable once', () => {
    const { tokens } = setup();
    const created = tokens.createJoinToken(ID, 60_000);
    expect(created.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(created.expiresAt.getTime()).toBe(1_060_000);
    expect(tokens.consumeJoinToken(created.token)).toEqual({ spiffeId: ID, labels: {} });
    expect(refusal(() => tokens.consumeJoinToken(created.token))).toBe('used');
  });

  it('gives the joining agent the token\'s labels', () => {
    const { tokens } = setup();
    const created = tokens.createJoinToken(ID, 60_000, { team: 'research', 'example.com/tier': 'gold' });
    expect(created.labels).toEqual({ team: 'research', 'example.com/tier': 'gold' });
    expect(tokens.consumeJoinToken(created.token).labels).toEqual({ team: 'research', 'example.com/tier': 'gold' });
  });

  it.each([
    [{ 'bad key!': 'x' }, /label key "bad key!"/],
    [{ team: 'has space' }, /label value "has space"/],
    [{ team: 'x'.repeat(64) }, /label value/],
    [{ '-team': 'x' }, /label key/],
    [{ 'Example.com/team': 'x' }, /prefix must be a lowercase DNS subdomain/],
    [{ 'kubernetes.io/namespace': 'prod' }, /set by Kubernetes attestation only/],
    [Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])), /at most 32 labels/],
  ])('refuses bad labels %#', (labels, message) => {
    const { tokens } = setup();
    expect(() => tokens.createJoinToken(ID, 60_000, labels)).toThrow(message);
    expect(tokens.list()).toHaveLength(0);
  });

  it('refuses unknown and expired tokens with typed reasons', () => {
    const { tokens, clock } = setup();
    const created = tokens.createJoinToken(ID, 60_000);
    expect(refusal(() => tokens.consumeJoinToken('x'.repeat(43)))).toBe('unknown');
    clock.now += 60_000;
    expect(refusal(() => tokens.consumeJoinToken(created.token))).toBe('expired');
  });

  it('refuses foreign trust domains, bad IDs and out-of-range lifetimes', () => {
    const { tokens } = setup();
    expect(() => tokens.createJoinToken('spiffe://evil.test/ns/a/sa/b')).toThrow(/trust domain/);
    expect(() => tokens.createJoinToken('not-an-id')).toThrow(/not a valid SPIFFE ID/);
    expect(() => tokens.createJoinToken(ID, 86_400_001)).toThrow(/lifetime/);
  });

  it('lists tokens without their secret: id, identity, status and expiry', () => {
    const { tokens, clock } = setup();
    const used = tokens.createJoinToken(ID, 60_000);
    tokens.consumeJoinToken(used.token);
    clock.now += 1;
    const unused = tokens.createJoinToken('spiffe://airlock.test/ns/demo/sa/planner', 60_000);
    const listed = tokens.list();
    expect(listed.map((t) => [t.id, t.status])).toEqual([
      [unused.id, 'unused'],
      [used.id, 'used'],
    ]);
    expect(JSON.stringify(listed)).not.toContain(used.token);
    expect(JSON.stringify(listed)).not.toContain(unused.token);
    clock.now += 60_000;
    expect(tokens.list()[0]?.status).toBe('expired');
  });

  it('revokes a token by id so that it no longer attests; a wrong or ambiguous id changes nothing', () => {
    const { tokens } = setup();
    const created = tokens.createJoinToken(ID, 60_000);
    const other = tokens.createJoinToken(ID, 60_000);
    expect(() => tokens.revoke('0'.repeat(16) === created.id ? '1'.repeat(16) : '0'.repeat(16))).toThrow(/no join token/);
    expect(() => tokens.revoke('abc')).toThrow(/8 to 64 hex/);
    expect(() => tokens.revoke("'; DROP TABLE join_tokens; --")).toThrow(/hex/);
    expect(tokens.revoke(created.id.toUpperCase())).toMatchObject({ alreadyRevoked: false, token: { id: created.id, status: 'revoked' } });
    expect(tokens.revoke(created.id).alreadyRevoked).toBe(true);
    expect(refusal(() => tokens.consumeJoinToken(created.token))).toBe('revoked');
    // The other token is untouched.
    expect(tokens.consumeJoinToken(other.token).spiffeId).toBe(ID);
  });

  it('refuses an id that is a prefix of several tokens, revoking none', () => {
    const { tokens, store } = setup();
    store.insertJoinToken({ hash: `abcdef01${'1'.repeat(56)}`, spiffeId: ID, expiresAt: 2_000_000 });
    store.insertJoinToken({ hash: `abcdef01${'2'.repeat(56)}`, spiffeId: ID, expiresAt: 2_000_000 });
    expect(() => tokens.revoke('abcdef01')).toThrow(/2 join tokens have ids starting abcdef01/);
    expect(tokens.list().map((t) => t.status)).toEqual(['unused', 'unused']);
    expect(tokens.revoke('abcdef012').token.status).toBe('revoked');
  });
});
