import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AirlockError, ErrorCode } from './errors.ts';
import { canonicalSerial, formatSpiffeId, parseSpiffeId, spiffeIdFromSubjectAltName, uriSans } from './spiffe.ts';
import { fuzz } from './testing/fuzz.ts';

// The reference is WHATWG URL: an ID parseSpiffeId accepts is read by it with the same trust domain
// (host) and path, and nothing else (no user, port, query or fragment).

/** Throws unless `err` is the typed refusal `code`. */
function expectRefusal(err: unknown, ...codes: ErrorCode[]): void {
  if (!(err instanceof AirlockError) || !codes.includes(err.code)) throw err;
}

const PIECES = ['a', 'z', '0', '9', '-', '.', '_', '..', 'A', 'ns', 'sa', '/', '//', '%2F', '%2e', '@', ':', '?', '#', ' ', '\t', '\n', '\u212a', 'ı', 'é', '\u0000', '*', 'spiffe://', 'x'.repeat(63), 'y'.repeat(64)];
const part = fc.array(fc.constantFrom(...PIECES), { maxLength: 5 }).map((p) => p.join(''));
const name = fc.stringMatching(/^[a-z0-9][-a-z0-9]{0,10}[a-z0-9]$/);
const candidate = fc.oneof(
  fc.tuple(part, part, part).map(([td, ns, sa]) => `spiffe://${td}/ns/${ns}/sa/${sa}`),
  fc.tuple(fc.constantFrom('spiffe://', 'SPIFFE://', 'spiffe:/', 'spiffe:', ''), part, fc.constantFrom('/ns/', '/NS/', '/ns//', '/'), name, fc.constantFrom('/sa/', '/sa//', '/SA/'), name, fc.constantFrom('', '/', '/x', '?q', '#f')).map((p) => p.join('')),
  fc.string({ unit: 'binary', maxLength: 60 }),
  // A valid ID with one character changed, inserted or upper-cased: the near misses.
  fc.tuple(fc.constantFrom('spiffe://airlock.local/ns/agents/sa/research-1', 'spiffe://a/ns/b/sa/c', 'spiffe://td_1.x-y/ns/n-1/sa/s.a'), fc.nat(), fc.constantFrom(...PIECES, 'S', 'P', 'I', 'F', 'E', '', 'upper')).map(([id, at, c]) => {
    const i = at % id.length;
    return c === 'upper' ? id.slice(0, i) + id.charAt(i).toUpperCase() + id.slice(i + 1) : id.slice(0, i) + c + id.slice(i + (at % 2));
  }),
);

describe('SPIFFE IDs (fuzz)', () => {
  it('parseSpiffeId refuses with a bad request, or reads an ID as WHATWG URL does and formats it back as written', () => {
    fuzz(fc.property(candidate, (uri) => {
      let id: ReturnType<typeof parseSpiffeId>;
      try {
        id = parseSpiffeId(uri);
      } catch (err) {
        expectRefusal(err, ErrorCode.BadRequest);
        return;
      }
      // What the SPIFFE spec allows in a trust domain, and Kubernetes in a namespace and service account name.
      expect(id.trustDomain).toMatch(/^[a-z0-9._-]{1,255}$/);
      expect(id.namespace).toMatch(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
      expect(id.serviceAccount).toMatch(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/);
      expect(formatSpiffeId(id.trustDomain, id.namespace, id.serviceAccount)).toBe(uri);
      const url = new URL(uri);
      expect({ protocol: url.protocol, host: url.host, pathname: url.pathname, search: url.search, hash: url.hash, username: url.username, password: url.password }).toEqual({
        protocol: 'spiffe:', host: id.trustDomain, pathname: `/ns/${id.namespace}/sa/${id.serviceAccount}`, search: '', hash: '', username: '', password: '',
      });
    }), 3000);
  });

  it('every Kubernetes name pair in a trust domain is an ID', () => {
    fuzz(fc.property(fc.stringMatching(/^[a-z0-9._-]{1,40}$/), name, fc.stringMatching(/^[a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?$/), (td, ns, sa) => {
      expect(parseSpiffeId(`spiffe://${td}/ns/${ns}/sa/${sa}`)).toEqual({ trustDomain: td, namespace: ns, serviceAccount: sa, uri: `spiffe://${td}/ns/${ns}/sa/${sa}` });
    }), 1000);
  });

  it('a certificate names one workload: its one URI SAN, else a typed refusal', () => {
    const entry = fc.oneof(candidate.map((u) => `URI:${u}`), fc.constantFrom('URI:spiffe://td/ns/a/sa/b', 'URI:spiffe://td/ns/c/sa/d', 'DNS:a.example', 'IP Address:127.0.0.1', 'email:a@b', 'URI:', '"URI:spiffe://td/ns/a/sa/b, URI:x"'));
    fuzz(fc.property(fc.array(entry, { maxLength: 3 }), (entries) => {
      const san = entries.join(', ');
      try {
        const id = spiffeIdFromSubjectAltName(san);
        expect(uriSans(san)).toEqual([id.uri]);
      } catch (err) {
        expectRefusal(err, ErrorCode.BadRequest, ErrorCode.Unauthenticated);
      }
    }), 1000);
  });

  it('canonicalSerial is the number in lower-case hex, without leading zeros or colons, whatever the spelling', () => {
    fuzz(fc.property(fc.bigInt({ min: 0n, max: 2n ** 160n }), fc.nat(4), fc.boolean(), fc.boolean(), (n, zeros, upper, colons) => {
      let hex = '0'.repeat(zeros) + n.toString(16);
      if (upper) hex = hex.toUpperCase();
      if (colons) hex = (hex.length % 2 === 1 ? `0${hex}` : hex).replace(/(..)(?=.)/g, '$1:');
      expect(canonicalSerial(hex)).toBe(n.toString(16));
      expect(canonicalSerial(canonicalSerial(hex))).toBe(n.toString(16));
    }), 1000);
  });
});
