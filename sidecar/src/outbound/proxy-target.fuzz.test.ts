import { isIP } from 'node:net';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { fuzz } from '@airlock/common/testing/fuzz';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalAddress } from './destination-check.ts';
import { assertHostMatches, parseAbsoluteTarget, parseAuthorityTarget, parseOriginTarget, type ProxyTarget } from './proxy-target.ts';

// The reference is WHATWG URL (what undici, fetch and the dialled address go by): wherever these
// parsers accept a target, they must name the host and port it names, in one canonical spelling.

/** Calls `f`; its typed refusal (AIRLOCK_BAD_REQUEST) is undefined; anything else thrown fails the property. */
function accepted<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch (err) {
    if (err instanceof AirlockError && err.code === ErrorCode.BadRequest) return undefined;
    throw err;
  }
}

/** Host and port as WHATWG URL reads `http://<authority>/`, IPv4-mapped IPv6 as the IPv4 address it reaches. */
function reference(authority: string): { host: string; port: number } | undefined {
  let url: URL;
  try {
    url = new URL(`http://${authority}/`);
  } catch {
    return undefined;
  }
  const ip = url.hostname.startsWith('[') ? canonicalAddress(url.hostname) : undefined;
  return { host: ip?.address ?? url.hostname, port: url.port === '' ? 80 : Number(url.port) };
}

const ipv4Number = fc.oneof(fc.constant(0xa9fea9fe), fc.constant(0x7f000001), fc.constant(0), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
/** The spellings WHATWG URL reads as an IPv4 address: dotted, one number, hex, octal, fewer parts, a final dot. */
const ipv4 = fc.tuple(ipv4Number, fc.integer({ min: 0, max: 5 }), fc.boolean()).map(([n, style, dot]) => {
  const b = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  const text = [
    b.join('.'),
    String(n),
    `0x${n.toString(16)}`,
    b.map((x) => `0${x.toString(8)}`).join('.'),
    `${b[0]}.${b[1]}.${(n & 0xffff).toString()}`,
    b.map((x) => `0X${x.toString(16).toUpperCase()}`).join('.'),
  ][style] ?? '';
  return dot ? `${text}.` : text;
});
const ipv6 = fc.constantFrom('[::1]', '[::]', '[::ffff:169.254.169.254]', '[::ffff:a9fe:a9fe]', '[::FFFF:7F00:1]', '[0:0:0:0:0:ffff:a9fe:a9fe]', '[fe80::1]', '[fe80::1%25eth0]', '[fd00::a]', '[1:2:3:4:5:6:7:8]', '[::1', '::1', '[]', '[v1.x]');
const label = fc.constantFrom('a', 'researcher', 'demo', 'example', 'com', 'EXAMPLE', 'xn--nxasmq6b', 'xn--', '-a', 'a-', '_x', '%41', '%2e', '\u212a', 'ß', 'é', '\u3002', '\uff0e', '\u00ad', '1', '0x1', '08', '');
const name = fc.array(label, { minLength: 1, maxLength: 4 }).map((l) => l.join('.'));
const junk = fc.constantFrom('@', '/', '?', '#', '\\', ' ', '\t', '%00', ':', '[', ']', '%', '\u0000', '*');
const port = fc.constantFrom('', ':', ':80', ':080', ':0', ':00', ':1', ':443', ':65535', ':65536', ':99999', ':-1', ':8a', ': 80', ':0x50');
const authority = fc.oneof(
  fc.tuple(fc.oneof(ipv4, ipv6, name), port).map(([h, p]) => h + p),
  fc.tuple(fc.oneof(ipv4, ipv6, name), port, junk, fc.oneof(name, ipv4)).map(([h, p, j, t]) => h + p + j + t),
  fc.string({ maxLength: 20 }),
);
const path = fc.oneof(fc.constant(''), fc.constantFrom('/', '/v1/search', '/a/../b', '?q=1', '/x?y#z', '/%2e%2e/', '//x', '/a\\b'), fc.string({ maxLength: 10 }).map((s) => `/${s}`));

describe('proxy targets (fuzz)', () => {
  it('an absolute-form target is refused with a bad request, or read as WHATWG URL reads its authority, its path kept as sent', () => {
    const target = fc.oneof(
      fc.tuple(fc.constantFrom('http://', 'HTTP://', 'https://', 'http:/', 'http:', 'ftp://', ''), authority, path).map(([s, a, p]) => s + a + p),
      fc.string({ unit: 'binary', maxLength: 40 }),
    );
    fuzz(fc.property(target, (text) => {
      const t = accepted(() => parseAbsoluteTarget(text));
      if (t === undefined) return;
      const rest = text.slice('http://'.length);
      const end = rest.search(/[/?]/);
      const raw = end === -1 ? rest : rest.slice(0, end);
      const sent = end === -1 ? '' : rest.slice(end);
      expect(t.path).toBe(sent === '' ? '/' : sent.startsWith('?') ? `/${sent}` : sent);
      expect({ host: t.host, port: t.port }).toEqual(reference(raw));
      expectCanonical(t);
      // What is sent on as Host reads back as the same target, and passes the Host check.
      expect(parseAbsoluteTarget(`http://${t.authority}${t.path}`)).toEqual(t);
      assertHostMatches(t, t.authority);
      assertHostMatches(t, t.authority.toUpperCase());
    }), 3000);
  });

  it('a Host header passes only when it names the same host and port as the target', () => {
    fuzz(fc.property(authority, authority, (a, h) => {
      const t = accepted(() => parseAbsoluteTarget(`http://${a}/`));
      if (t === undefined) return;
      if (accepted(() => { assertHostMatches(t, h); return true; }) === undefined) return;
      if (h === t.authority) return;
      expect(reference(h.trim())).toEqual({ host: t.host, port: t.port });
    }), 3000);
  });

  it('an origin-form target is routed by its Host as an absolute-form one would be, its path kept as sent', () => {
    fuzz(fc.property(path, fc.option(authority, { nil: undefined }), (p, host) => {
      const t = accepted(() => parseOriginTarget(p, host));
      if (t === undefined) return;
      expect(t.path).toBe(p);
      const absolute = parseAbsoluteTarget(`http://${host?.trim() ?? ''}/`);
      expect({ host: t.host, port: t.port, authority: t.authority }).toEqual({ host: absolute.host, port: absolute.port, authority: absolute.authority });
      expectCanonical(t);
    }), 3000);
  });

  it('a CONNECT target is host:port with a port, read as WHATWG URL reads it, and reads back as itself', () => {
    fuzz(fc.property(fc.oneof(authority, fc.string({ unit: 'binary', maxLength: 30 })), (text) => {
      const t = accepted(() => parseAuthorityTarget(text));
      if (t === undefined) return;
      expect({ host: t.host, port: t.port }).toEqual(reference(text));
      expect(t.path).toBe('');
      expectCanonical(t);
      expect(parseAuthorityTarget(t.authority)).toEqual(t);
    }), 3000);
  });
});

/** The host as it is dialled and judged: one spelling (no other IPv4 spelling, no brackets, lower case), a port that can be dialled. */
function expectCanonical(t: ProxyTarget): void {
  expect(t.port).toBeGreaterThanOrEqual(1);
  expect(t.port).toBeLessThanOrEqual(65535);
  expect(t.host).toBe(t.host.toLowerCase());
  expect(t.host).not.toMatch(/[[\]/?#@\\\s%]/);
  if (isIP(t.host) === 0) expect(reference(t.host)?.host).toBe(t.host);
  else expect(canonicalAddress(t.host)?.address).toBe(t.host);
}
