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
    expect(tokens.consumeJoinToken(created.token)).toBe(ID);
    expect(refusal(() => tokens.consumeJoinToken(created.token))).toBe('used');
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
});
