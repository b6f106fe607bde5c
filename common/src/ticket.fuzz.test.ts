import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_TICKET_CHARS, openTicket, sealTicket, TicketMacKey, ticketMacValid, type TicketClaims } from './ticket.ts';
import { fuzz } from './testing/fuzz.ts';

// openTicket's typed refusal is `undefined` (a malformed ticket: the ingress asks the control plane);
// it must never throw, whatever a peer puts in the header.

const BASE64URL = Array.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_');
const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.string({ unit: fc.constantFrom(...BASE64URL, '=', '+', '/', ' ', '.'), maxLength: 600 }),
  // Bytes that look like a ticket: version 2, then anything (length prefixes past the end, short, long).
  fc.uint8Array({ minLength: 0, maxLength: 400 }).map((b) => Buffer.concat([Buffer.from([2]), b]).toString('base64url')),
);
const field = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('', '/v1/x?q=é', 'spiffe://a/ns/b/sa/c', '\u0000', '\ud800', 'a\udc00b'));
const claims: fc.Arbitrary<TicketClaims> = fc.record({
  decisionId: fc.uuid(),
  source: field,
  destination: field,
  instance: field,
  host: field,
  port: fc.integer({ min: 0, max: 0xffff }),
  method: field,
  path: field,
  mcpMethod: field,
  mcpTool: field,
  mcpArgumentsDigest: fc.oneof(fc.constant(''), fc.stringMatching(/^[0-9a-f]{64}$/), field),
  policyVersion: fc.nat({ max: 0xffffffff }),
  issuedAt: fc.nat({ max: 2 ** 48 - 1 }),
  expiresAt: fc.nat({ max: 2 ** 48 - 1 }),
});
const key = fc.record({ keyId: fc.nat({ max: 0xffffffff }), key: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b)) });

function seal(c: TicketClaims, k: { keyId: number; key: Buffer }): string {
  const sealed = sealTicket(c, k);
  if (sealed === undefined) throw new Error('no ticket for claims that fit');
  return sealed;
}

describe('ticket codec (fuzz)', () => {
  it('openTicket never throws: a string is a ticket (its fields in range) or undefined', () => {
    fuzz(fc.property(text, (t) => {
      const opened = openTicket(t);
      if (opened === undefined) return;
      expect(t.length).toBeLessThanOrEqual(MAX_TICKET_CHARS);
      expect(opened.claims.decisionId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(opened.mac.length).toBe(32);
      expect(ticketMacValid(opened, randomBytes(32))).toBe(false);
    }), 2000);
  });

  it('seal → open gives back every claim and the key id, and the MAC verifies (raw and KeyObject keys); or no ticket is issued', () => {
    fuzz(fc.property(claims, key, (c, k) => {
      const sealed = sealTicket(c, k);
      if (sealed === undefined) {
        // Only a claim that cannot be carried exactly is left without a ticket (the ingress then asks).
        expect(Object.values(c).some((v) => typeof v === 'string' && !v.isWellFormed())).toBe(true);
        return;
      }
      const opened = openTicket(sealed);
      expect(opened?.keyId).toBe(k.keyId);
      expect(opened?.claims).toEqual(c);
      expect(opened !== undefined && ticketMacValid(opened, k.key)).toBe(true);
      expect(opened !== undefined && ticketMacValid(opened, new TicketMacKey(k.key))).toBe(true);
    }), 500);
  });

  it('any single changed character of a ticket fails the parse or the MAC', () => {
    fuzz(fc.property(claims.filter((c) => sealTicket(c, { keyId: 1, key: Buffer.alloc(32) }) !== undefined), key, fc.oneof(fc.constant('last' as const), fc.nat()), fc.constantFrom(...BASE64URL), (c, k, at, ch) => {
      const sealed = seal(c, k);
      // The last character often: its unused low bits are where two texts could read as one ticket.
      const i = at === 'last' ? sealed.length - 1 : at % sealed.length;
      if (sealed[i] === ch) return;
      const opened = openTicket(sealed.slice(0, i) + ch + sealed.slice(i + 1));
      expect(opened === undefined || !ticketMacValid(opened, k.key)).toBe(true);
    }), 1000);
  });

  it('any single changed byte of a ticket fails the parse or the MAC', () => {
    fuzz(fc.property(claims.filter((c) => sealTicket(c, { keyId: 1, key: Buffer.alloc(32) }) !== undefined), key, fc.nat(), fc.integer({ min: 1, max: 255 }), (c, k, at, flip) => {
      const raw = Buffer.from(seal(c, k), 'base64url');
      const i = at % raw.length;
      raw[i] = (raw[i] ?? 0) ^ flip;
      const opened = openTicket(raw.toString('base64url'));
      expect(opened === undefined || !ticketMacValid(opened, k.key)).toBe(true);
    }), 1000);
  });

  it('no ticket verifies under another key', () => {
    fuzz(fc.property(claims.filter((c) => sealTicket(c, { keyId: 1, key: Buffer.alloc(32) }) !== undefined), key, key, (c, k, other) => {
      fc.pre(!k.key.equals(other.key));
      const opened = openTicket(seal(c, k));
      expect(opened).toBeDefined();
      expect(opened !== undefined && ticketMacValid(opened, other.key)).toBe(false);
    }), 500);
  });
});
