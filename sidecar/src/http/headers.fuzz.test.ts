import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { connectionNamed, isUnsentHeader, MAX_AUTHZ_HEADER_BYTES, MAX_AUTHZ_HEADERS } from '@airlock/common/headers';
import { fuzz, fuzzAsync } from '@airlock/common/testing/fuzz';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawHttp } from '../../../test/support/raw-http.ts';
import { authzHeaders } from './authz-headers.ts';
import { requestHeadersToForward, responseHeadersToForward, singleHostHeader, XFCC } from './headers.ts';

// The header filters are checked against what RFC 9110 and the README say in so many words, not
// against their own code: hop-by-hop headers (and those the Connection header names) never cross a
// sidecar, only a sidecar sets XFCC, no name with "_" passes, secrets never reach the control plane.

const HOP_BY_HOP = ['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect', 'proxy-authorization', 'proxy-connection', 'proxy-x'];
const NAMES = [...HOP_BY_HOP, XFCC, 'x_forwarded_client_cert', 'x-forwarded-client_cert', 'host', 'authorization', 'cookie', 'content-type', 'content-length', 'x-tenant', 'x-a', 'x-b', 'accept', 'set-cookie', 'x_a'];
/** A lower-case header name: a known one or any token (RFC 9110 tchar). */
const lowerName = fc.oneof(fc.constantFrom(...NAMES), fc.stringMatching(/^[a-z0-9!#$%&'*+.^_`|~-]{1,12}$/));
/** As a client may spell it. */
const spelled = lowerName.chain((n) => fc.constantFrom(n, n.toUpperCase(), n.replace(/(^|-)([a-z])/g, (_m: string, d: string, c: string) => d + c.toUpperCase())));
const value = fc.oneof(fc.constantFrom('', 'x', 'close', 'x-a, x-b', 'X-Tenant,,  cookie ', ' keep-alive , Upgrade'), fc.string({ maxLength: 30 }));
/** A Connection value naming some of the pool (in any case, with stray spaces and commas). */
const connection = fc.array(spelled, { maxLength: 4 }).chain((names) => fc.constantFrom(names.join(','), names.join(' , '), `,${names.join(',,')},`));

const isNamedBy = (name: string, conn: string | string[] | undefined): boolean =>
  conn !== undefined && (Array.isArray(conn) ? conn.join(',') : conn).split(',').some((t) => t.trim().toLowerCase() === name);
const hopByHop = (name: string, conn: string | string[] | undefined): boolean =>
  ['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect'].includes(name) || name.startsWith('proxy-') || isNamedBy(name, conn);

/** Headers as Node hands them over: lower-case names, a string or (set-cookie and the like) a list; never `__proto__` (Node drops it). */
const incoming = fc.tuple(fc.dictionary(lowerName.filter((n) => n !== '__proto__'), fc.oneof(value, fc.array(value, { minLength: 1, maxLength: 3 })), { maxKeys: 10 }), fc.option(connection, { nil: undefined })).map(([h, conn]): IncomingHttpHeaders => {
  const out: IncomingHttpHeaders = { ...h };
  if (conn !== undefined) out.connection = conn;
  return out;
});

describe('header filters (fuzz)', () => {
  it('connectionNamed is the set of lower-case names listed, however spaced', () => {
    fuzz(fc.property(fc.array(fc.tuple(spelled, fc.constantFrom('', ' ', '\t', '  ')), { maxLength: 6 }), fc.boolean(), (items, asList) => {
      const texts = items.map(([n, pad]) => `${pad}${n}${pad}`);
      const named = connectionNamed(asList ? texts : texts.join(','));
      expect([...named].sort()).toEqual([...new Set(items.map(([n]) => n.toLowerCase()))].sort());
    }));
  });

  it('a request passes on every header but hop-by-hop ones, those Connection names, XFCC and names with "_", values untouched', () => {
    fuzz(fc.property(incoming, (h) => {
      const out = requestHeadersToForward(h);
      const expected = Object.fromEntries(Object.entries(h).filter(([n, v]) => v !== undefined && n !== XFCC && !n.includes('_') && !hopByHop(n, h.connection)));
      expect(out).toEqual(expected);
      // The inbound sidecar then sets its own: the app sees one XFCC, whatever arrived.
      const withOwn = { ...out, [XFCC]: 'By=spiffe://td/ns/a/sa/b;URI=spiffe://td/ns/c/sa/d' };
      expect(Object.keys(withOwn).filter((n) => n.replace(/_/g, '-').toLowerCase() === XFCC)).toEqual([XFCC]);
    }), 1000);
  });

  it('a response passes on every header but hop-by-hop ones and those Connection names', () => {
    fuzz(fc.property(incoming, (h) => {
      expect(responseHeadersToForward(h)).toEqual(Object.fromEntries(Object.entries(h).filter(([n, v]) => v !== undefined && !hopByHop(n, h.connection))));
    }), 1000);
  });

  it('headers sent for authorization: never secrets, hop-by-hop or "_", within bounds, each name with all its occurrences or none', () => {
    // Large values (the byte bound), and many short repeats of a few names (the count bound).
    const raw = fc.oneof(
      fc.array(fc.tuple(spelled, fc.oneof(value, fc.integer({ min: 200, max: 3000 }).map((n) => 'v'.repeat(n)))), { maxLength: 40 }),
      fc.array(fc.tuple(fc.constantFrom('x-a', 'X-B', 'x-tenant', 'cookie', 'te'), fc.constantFrom('', '1', 'abc')), { minLength: 20, maxLength: 60 }),
      fc.array(fc.tuple(fc.constantFrom('x-a', 'X-B', 'x-tenant', 'x-c', 'x-d'), fc.integer({ min: 500, max: 3000 }).map((n) => 'w'.repeat(n))), { minLength: 3, maxLength: 12 }),
    );
    fuzz(fc.property(raw, (pairs) => {
      const rawHeaders = pairs.flat();
      const { entries, incomplete } = authzHeaders(rawHeaders);
      const conn = pairs.filter(([n]) => n.toLowerCase() === 'connection').map(([, v]) => v);
      const occurrences = new Map<string, string[]>();
      for (const [n, v] of pairs) occurrences.set(n.toLowerCase(), [...(occurrences.get(n.toLowerCase()) ?? []), v]);
      const sendable = [...occurrences.keys()].filter((n) => !['authorization', 'cookie', 'host', XFCC].includes(n) && !n.includes('_') && !hopByHop(n, conn));
      for (const n of new Set(entries.map((e) => e.name))) {
        expect(sendable).toContain(n);
        expect(entries.filter((e) => e.name === n).map((e) => e.value)).toEqual(occurrences.get(n));
      }
      expect(entries.length).toBeLessThanOrEqual(MAX_AUTHZ_HEADERS);
      expect(entries.reduce((s, e) => s + Buffer.byteLength(e.name) + Buffer.byteLength(e.value), 0)).toBeLessThanOrEqual(MAX_AUTHZ_HEADER_BYTES);
      expect(incomplete).toBe(sendable.some((n) => !entries.some((e) => e.name === n)));
      for (const n of NAMES) if (!sendable.includes(n)) expect(isUnsentHeader(n, connectionNamed(conn)) || !occurrences.has(n)).toBe(true);
    }), 1000);
  });

  it('the Host header: the one occurrence, or a bad request for two (or none in HTTP/1.1)', () => {
    const raw = fc.array(fc.tuple(fc.oneof(spelled, fc.constantFrom('host', 'Host', 'HOST', 'hOsT', 'hosts', 'hos', 'x-host')), value), { maxLength: 6 });
    fuzz(fc.property(raw, fc.constantFrom('1.0', '1.1', '2.0'), (pairs, httpVersion) => {
      const hosts = pairs.filter(([n]) => n.toLowerCase() === 'host').map(([, v]) => v);
      let got: string | undefined;
      try {
        got = singleHostHeader({ rawHeaders: pairs.flat(), httpVersion });
      } catch (err) {
        expect(err).toBeInstanceOf(AirlockError);
        expect((err as AirlockError).code).toBe(ErrorCode.BadRequest);
        expect(hosts.length > 1 || (hosts.length === 0 && httpVersion !== '1.0')).toBe(true);
        return;
      }
      expect(hosts.length).toBeLessThanOrEqual(1);
      expect(got).toBe(hosts[0]);
    }), 1000);
  });
});

describe('header filters on headers read by Node (fuzz, raw bytes)', () => {
  // What the inbound sidecar does with a request, on headers as Node's parser reads raw bytes:
  // whatever spelling of XFCC arrives (case, "_", repeated, named by Connection), the app gets ours only.
  let server: Server;
  const app: { seen?: { headers: Record<string, string | string[]>; rawHeaders: string[] } } = {};
  const lastSeen = (): typeof app.seen => app.seen;
  beforeAll(async () => {
    server = createServer({ requireHostHeader: false }, (req, res) => {
      const headers = requestHeadersToForward(req.headers);
      headers[XFCC] = 'By=ours';
      app.seen = { headers, rawHeaders: req.rawHeaders };
      res.writeHead(204, { connection: 'close' }).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('the app sees one XFCC, the sidecar\'s, and no other header Connection names', async () => {
    const xfccSpelling = fc.constantFrom('X-Forwarded-Client-Cert', 'x-forwarded-client-cert', 'X-FORWARDED-CLIENT-CERT', 'x_forwarded_client_cert', 'X_Forwarded_Client_Cert', 'x-forwarded-client_cert', 'x-forwarded-client-cert\t', ' x-forwarded-client-cert', 'x-forwarded-client-cert ', 'x-forwarded-client-cert\u0000');
    const line = fc.oneof(fc.tuple(xfccSpelling, value), fc.tuple(spelled, value), fc.tuple(fc.constant('Connection'), connection));
    await fuzzAsync(fc.asyncProperty(fc.array(line, { maxLength: 8 }), async (lines) => {
      delete app.seen;
      const head = lines.map(([n, v]) => `${n}: ${v.replace(/[\r\n]/g, '')}\r\n`).join('');
      const answer = await rawHttp((server.address() as AddressInfo).port, Buffer.from(`GET / HTTP/1.1\r\nHost: app\r\n${head}Connection: close\r\n\r\n`, 'latin1'));
      const seen = lastSeen();
      if (seen === undefined) {
        // Node's parser refused the bytes (a bad name or value, an Expect it cannot meet): nothing reached the app.
        expect([0, 400, 417]).toContain(answer.status);
        return;
      }
      const { headers, rawHeaders } = seen;
      expect(Object.keys(headers).filter((n) => n.replace(/_/g, '-').toLowerCase() === XFCC)).toEqual([XFCC]);
      expect(headers[XFCC]).toBe('By=ours');
      const conn = rawHeaders.filter((_v, i) => i % 2 === 1 && rawHeaders[i - 1]?.toLowerCase() === 'connection');
      for (const n of Object.keys(headers)) if (n !== XFCC) expect(hopByHop(n, conn)).toBe(false);
    }), 100);
  });
});
