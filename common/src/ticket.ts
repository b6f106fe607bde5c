/**
 * The ticket: one control-plane decision bound to one mesh call, issued to the egress sidecar with
 * an ALLOW and checked by the destination sidecar alone (README "How a call flows"). The one codec
 * both sides use: the control plane seals, the ingress opens and checks the MAC.
 *
 * Compact binary, sent base64url in one header. Layout (big-endian):
 *   u8 version | u32 key id | u48 issued at (ms) | u48 expires at (ms) | u32 policy version |
 *   u16 port | 16-byte decision id (a UUID) | 9 × (u16 length + UTF-8): source, destination,
 *   destination instance, host, method, path, MCP method, MCP tool, MCP arguments digest | 32-byte
 *   HMAC-SHA256 of all that precedes it, under the destination identity's key named by the key id.
 */
import { hash, timingSafeEqual } from 'node:crypto';

/** The request header that carries a ticket from the egress to the ingress sidecar (never to or from an app). */
export const TICKET_HEADER = 'airlock-ticket';
export const DEFAULT_TICKET_TTL_MS = 2000;
/** A ticket never lives longer than this (setting ticketTtl is bounded by it; the ingress refuses a longer one). */
export const MAX_TICKET_TTL_MS = 10_000;
/** A longer ticket is not issued (the call falls back to a round trip): it must fit the peer's header limit with the request. */
export const MAX_TICKET_CHARS = 4096;

// 2: the MCP arguments digest (a version 1 ticket is not one: its call falls back to a decision).
const VERSION = 2;
const STRINGS = 9;
const MAC_BYTES = 32;
const FIXED_BYTES = 1 + 4 + 6 + 6 + 4 + 2 + 16;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What a ticket binds: the decision and the one call it allowed. */
export interface TicketClaims {
  /** A UUID: the decision's id, as audited. */
  readonly decisionId: string;
  readonly source: string;
  readonly destination: string;
  /** The upstream address the control plane chose (host:port of the destination sidecar's inbound listener). */
  readonly instance: string;
  readonly host: string;
  readonly port: number;
  readonly method: string;
  readonly path: string;
  /**
   * '' when the request carried no MCP message, or its body was not read for MCP (mcp_body_skipped;
   * a POST body read always yields a method, or is unreadable and gets no ticket): so a ticket binds
   * whether the body was inspected, and an ingress admits it only if it read (or skipped) the same.
   */
  readonly mcpMethod: string;
  readonly mcpTool: string;
  /**
   * argumentsDigest() of the tool arguments when a rule judged them (the ingress admits the call only
   * if its own reading of the body digests the same); '' when none did.
   */
  readonly mcpArgumentsDigest: string;
  readonly policyVersion: number;
  /** Milliseconds since the Unix epoch. */
  readonly issuedAt: number;
  readonly expiresAt: number;
}

/** A ticket read but not yet verified: the key id picks the key its MAC is checked with. */
export interface OpenedTicket {
  readonly keyId: number;
  readonly claims: TicketClaims;
  readonly signed: Buffer;
  readonly mac: Buffer;
}

/** A ticket key: a key id and the 32-byte HMAC key derived for one destination identity. */
export interface TicketKey {
  readonly keyId: number;
  readonly key: Buffer;
}

/** SHA-256's block: HMAC's padded key is one block, prepended to the message. */
const BLOCK = 64;

/**
 * A ticket key ready to MAC with: HMAC-SHA256 (RFC 2104) as two one-shot SHA-256 calls over the
 * key's inner and outer pads, computed once per key. On Node 24 (OpenSSL 3) `createHmac` costs
 * ~3 µs per ticket even with a KeyObject (an EVP context per call); the two hashes ~1 µs.
 */
export class TicketMacKey {
  /** The key XOR ipad: the first block of the inner hash. */
  readonly inner: Buffer;
  /** The key XOR opad, then room for the inner digest: the whole outer hash's input (scratch, written per MAC). */
  readonly outer: Buffer;

  constructor(key: Buffer) {
    if (key.length > BLOCK) throw new RangeError('a ticket key is at most one SHA-256 block');
    this.inner = Buffer.alloc(BLOCK, 0x36);
    this.outer = Buffer.alloc(BLOCK + 32, 0x5c);
    for (let i = 0; i < key.length; i++) {
      this.inner[i] = (this.inner[i] ?? 0) ^ (key[i] ?? 0);
      this.outer[i] = (this.outer[i] ?? 0) ^ (key[i] ?? 0);
    }
  }
}

/** An HMAC key: raw bytes, or (on the hot paths) its pads computed once. */
export type MacKey = Buffer | TicketMacKey;

/**
 * Writes HMAC-SHA256 of `block[BLOCK, end)` at `block[end, end + 32)`; `block[0, BLOCK)` is
 * scratch (the inner pad goes there, so the message needs no copy). Synchronous: the key's outer
 * scratch is never shared across a yield.
 */
function macInto(key: MacKey, block: Buffer, end: number): void {
  const k = key instanceof TicketMacKey ? key : new TicketMacKey(key);
  k.inner.copy(block, 0);
  // 'binary' (latin1) strings: a one-shot hash to a Buffer is slower on Node 24 than to a string.
  k.outer.write(hash('sha256', block.subarray(0, end), 'binary'), BLOCK, 'latin1');
  block.write(hash('sha256', k.outer, 'binary'), end, 'latin1');
}

function strings(c: TicketClaims): readonly string[] {
  return [c.source, c.destination, c.instance, c.host, c.method, c.path, c.mcpMethod, c.mcpTool, c.mcpArgumentsDigest];
}

/** What a ticket binds of a tools/call's arguments: the SHA-256 (hex) of their canonical JSON as both sidecars read it (argumentsJson). */
export function argumentsDigest(argumentsJson: string): string {
  return hash('sha256', argumentsJson, 'hex');
}

/** The sealed ticket, base64url; undefined when a field does not fit, or is not well-formed UTF-16 (no ticket: the ingress asks). */
export function sealTicket(claims: TicketClaims, key: { readonly keyId: number; readonly key: MacKey }): string | undefined {
  if (!UUID.test(claims.decisionId)) return undefined;
  const parts = strings(claims);
  let size = FIXED_BYTES + MAC_BYTES;
  for (const p of parts) {
    // A lone surrogate would be sealed as U+FFFD: the ticket would bind another string than the call's.
    if (!p.isWellFormed()) return undefined;
    const n = Buffer.byteLength(p, 'utf8');
    if (n > 0xffff) return undefined;
    size += 2 + n;
  }
  if (Math.ceil((size * 4) / 3) > MAX_TICKET_CHARS) return undefined;
  // The ticket from BLOCK on: the MAC's inner pad is written before it, in the same buffer.
  const buf = Buffer.allocUnsafe(BLOCK + size);
  let o = buf.writeUInt8(VERSION, BLOCK);
  o = buf.writeUInt32BE(key.keyId >>> 0, o);
  o = buf.writeUIntBE(claims.issuedAt, o, 6);
  o = buf.writeUIntBE(claims.expiresAt, o, 6);
  o = buf.writeUInt32BE(claims.policyVersion >>> 0, o);
  o = buf.writeUInt16BE(claims.port, o);
  o += buf.write(claims.decisionId.replaceAll('-', ''), o, 16, 'hex');
  for (const p of parts) {
    const n = buf.write(p, o + 2, 'utf8');
    o = buf.writeUInt16BE(n, o) + n;
  }
  macInto(key.key, buf, o);
  return buf.toString('base64url', BLOCK);
}

/** Reads a ticket's fields without trusting them; undefined when it is not one (malformed). */
export function openTicket(text: string): OpenedTicket | undefined {
  if (text.length > MAX_TICKET_CHARS || !/^[A-Za-z0-9_-]+$/.test(text) || !canonicalBase64url(text)) return undefined;
  const buf = Buffer.from(text, 'base64url');
  if (buf.length < FIXED_BYTES + 16 + MAC_BYTES || buf.readUInt8(0) !== VERSION) return undefined;
  const end = buf.length - MAC_BYTES;
  let o = 1;
  const keyId = buf.readUInt32BE(o);
  o += 4;
  const issuedAt = buf.readUIntBE(o, 6);
  o += 6;
  const expiresAt = buf.readUIntBE(o, 6);
  o += 6;
  const policyVersion = buf.readUInt32BE(o);
  o += 4;
  const port = buf.readUInt16BE(o);
  o += 2;
  const id = buf.toString('hex', o, o + 16);
  o += 16;
  const s: string[] = [];
  for (let i = 0; i < STRINGS; i++) {
    if (o + 2 > end) return undefined;
    const n = buf.readUInt16BE(o);
    o += 2;
    if (o + n > end) return undefined;
    s.push(buf.toString('utf8', o, o + n));
    o += n;
  }
  if (o !== end) return undefined;
  const [source = '', destination = '', instance = '', host = '', method = '', path = '', mcpMethod = '', mcpTool = '', mcpArgumentsDigest = ''] = s;
  const decisionId = `${id.slice(0, 8)}-${id.slice(8, 12)}-${id.slice(12, 16)}-${id.slice(16, 20)}-${id.slice(20)}`;
  return {
    keyId,
    claims: { decisionId, source, destination, instance, host, port, method, path, mcpMethod, mcpTool, mcpArgumentsDigest, policyVersion, issuedAt, expiresAt },
    signed: buf.subarray(0, end),
    mac: buf.subarray(end),
  };
}

/**
 * Whether `text` (base64url characters only) is the one encoding of its bytes: Buffer.from ignores
 * the unused low bits of the last character (and a lone trailing character), so without this check
 * several texts would read as one ticket.
 */
function canonicalBase64url(text: string): boolean {
  const rest = text.length % 4;
  if (rest === 0) return true;
  if (rest === 1) return false;
  const last = BASE64URL_VALUE[text.charCodeAt(text.length - 1)] ?? 0;
  // 2 characters carry 1 byte (4 bits unused), 3 carry 2 bytes (2 bits unused).
  return (last & (rest === 2 ? 0x0f : 0x03)) === 0;
}

const BASE64URL_VALUE: readonly number[] = (() => {
  const values: number[] = [];
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  for (let i = 0; i < alphabet.length; i++) values[alphabet.charCodeAt(i)] = i;
  return values;
})();

/** Whether the ticket's MAC verifies under `key` (compared in constant time). */
export function ticketMacValid(ticket: OpenedTicket, key: MacKey): boolean {
  const block = Buffer.allocUnsafe(BLOCK + ticket.signed.length + MAC_BYTES);
  ticket.signed.copy(block, BLOCK);
  macInto(key, block, BLOCK + ticket.signed.length);
  return timingSafeEqual(block.subarray(BLOCK + ticket.signed.length), ticket.mac);
}
