import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { argumentsDigest, MAX_TICKET_CHARS, openTicket, sealTicket, TicketMacKey, ticketMacValid, type TicketClaims } from './ticket.ts';

const key = { keyId: 7, key: randomBytes(32) };
const claims: TicketClaims = {
  decisionId: randomUUID(),
  source: 'spiffe://airlock.local/ns/agents/sa/researcher',
  destination: 'spiffe://airlock.local/ns/tools/sa/search',
  instance: '10.0.0.7:15006',
  host: 'search.tools',
  port: 8080,
  method: 'POST',
  path: '/v1/search?q=é',
  mcpMethod: 'tools/call',
  mcpTool: 'search_web',
  mcpArgumentsDigest: argumentsDigest('{"q":"mcp"}'),
  policyVersion: 12,
  issuedAt: 1_800_000_000_123,
  expiresAt: 1_800_000_002_123,
};

describe('ticket codec', () => {
  it('round-trips every field and verifies under its key only', () => {
    const text = sealTicket(claims, key) ?? '';
    expect(text).toMatch(/^[A-Za-z0-9_-]+$/);
    const opened = openTicket(text);
    expect(opened?.keyId).toBe(7);
    expect(opened?.claims).toEqual(claims);
    expect(opened !== undefined && ticketMacValid(opened, key.key)).toBe(true);
    expect(opened !== undefined && ticketMacValid(opened, randomBytes(32))).toBe(false);
  });

  it('a changed byte anywhere fails the MAC or the parse', () => {
    const raw = Buffer.from(sealTicket(claims, key) ?? '', 'base64url');
    for (let i = 0; i < raw.length; i++) {
      const bad = Buffer.from(raw);
      bad[i] = (bad[i] ?? 0) ^ 0x01;
      const opened = openTicket(bad.toString('base64url'));
      expect(opened === undefined || !ticketMacValid(opened, key.key)).toBe(true);
    }
  });

  it('refuses what is not a ticket: other alphabets, truncations, trailing bytes, another version, too long', () => {
    const text = sealTicket(claims, key) ?? '';
    const raw = Buffer.from(text, 'base64url');
    expect(openTicket('')).toBeUndefined();
    expect(openTicket(`${text}=`)).toBeUndefined();
    expect(openTicket(`+${text.slice(1)}`)).toBeUndefined();
    expect(openTicket(`${text.slice(0, 10)}/${text.slice(11)}`)).toBeUndefined();
    expect(openTicket(raw.subarray(0, raw.length - 1).toString('base64url'))).toBeUndefined();
    expect(openTicket(raw.subarray(0, 40).toString('base64url'))).toBeUndefined();
    expect(openTicket(Buffer.concat([raw, Buffer.alloc(1)]).toString('base64url'))).toBeUndefined();
    // Version 1 (before tools' arguments were bound) and a later one are not read.
    for (const version of [1, 3]) {
      const other = Buffer.from(raw);
      other[0] = version;
      expect(openTicket(other.toString('base64url'))).toBeUndefined();
    }
    expect(openTicket('A'.repeat(MAX_TICKET_CHARS + 4))).toBeUndefined();
  });

  it('reads one text per ticket: a last character differing only in its unused bits is refused (found by fuzzing)', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    // Tool names 1 to 3 bytes longer: among them, tickets whose last character carries 4 and 2 unused bits.
    for (const pad of ['x', 'xx', 'xxx']) {
      const text = sealTicket({ ...claims, mcpTool: `search_web${pad}` }, key) ?? '';
      if (text.length % 4 === 0) continue;
      // Bit 0 of the last character is never used: its twin holds the same bytes.
      const twin = `${text.slice(0, -1)}${alphabet.charAt(alphabet.indexOf(text.slice(-1)) ^ 1)}`;
      expect(Buffer.from(twin, 'base64url').equals(Buffer.from(text, 'base64url'))).toBe(true);
      expect(openTicket(twin)).toBeUndefined();
      expect(openTicket(text)).toBeDefined();
    }
  });

  it('issues no ticket for a claim UTF-8 cannot carry exactly (a lone surrogate would be read back as U+FFFD; found by fuzzing)', () => {
    for (const path of ['/v1/\ud800', 'a\udc00b']) expect(sealTicket({ ...claims, path }, key)).toBeUndefined();
    expect(sealTicket({ ...claims, mcpTool: 'tool_\ud83d' }, key)).toBeUndefined();
    expect(sealTicket({ ...claims, mcpTool: 'tool_\ud83d\ude00' }, key)).toBeDefined();
  });

  it('issues no ticket for a call that does not fit one (the ingress then asks)', () => {
    expect(sealTicket({ ...claims, path: `/${'a'.repeat(MAX_TICKET_CHARS)}` }, key)).toBeUndefined();
    expect(sealTicket({ ...claims, decisionId: 'not-a-uuid' }, key)).toBeUndefined();
  });

  it('MACs with HMAC-SHA256 exactly (RFC 2104), from raw bytes or precomputed pads, whatever the claims', () => {
    for (let i = 0; i < 200; i++) {
      const k = { keyId: i, key: randomBytes(32) };
      const c = { ...claims, decisionId: randomUUID(), path: `/${randomBytes(i).toString('hex')}`, mcpTool: 'é'.repeat(i % 7) };
      const raw = Buffer.from(sealTicket(c, i % 2 === 0 ? k : { keyId: i, key: new TicketMacKey(k.key) }) ?? '', 'base64url');
      const signed = raw.subarray(0, raw.length - 32);
      expect(raw.subarray(raw.length - 32)).toEqual(createHmac('sha256', k.key).update(signed).digest());
      const opened = openTicket(raw.toString('base64url'));
      expect(opened !== undefined && ticketMacValid(opened, new TicketMacKey(k.key)) && ticketMacValid(opened, k.key)).toBe(true);
      expect(opened !== undefined && ticketMacValid(opened, new TicketMacKey(randomBytes(32)))).toBe(false);
    }
  });
});
