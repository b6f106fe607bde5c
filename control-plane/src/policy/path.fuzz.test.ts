import { parse as legacyParse } from 'node:url';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { fuzz } from '@airlock/common/testing/fuzz';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PolicyEngine, toAgent } from './engine.ts';
import { parsePolicyText } from './load.ts';
import { normalizePath } from './path.ts';

// The references are two real URL parsers: WHATWG `URL` (what undici, fetch and most servers
// behind a sidecar use) and Node's legacy `url.parse` (what older Node servers route on). They
// differ in what they escape (`'`, `|`, `^`, non-ASCII) and in whether they resolve dot-segments
// (WHATWG does, `%2e` included; url.parse does not), so paths are compared by meaning: segment by
// segment, percent-escapes decoded to bytes.

/** Bytes of a path segment as a server reads it: escapes decoded, other characters in UTF-8. */
function bytesOf(segment: string): string {
  const out: number[] = [];
  for (let i = 0; i < segment.length; i++) {
    if (segment[i] === '%' && /^[0-9a-f]{2}$/i.test(segment.slice(i + 1, i + 3))) {
      out.push(parseInt(segment.slice(i + 1, i + 3), 16));
      i += 2;
      continue;
    }
    const cp = segment.codePointAt(i) ?? 0;
    const ch = String.fromCodePoint(cp);
    out.push(...Buffer.from(ch, 'utf8'));
    i += ch.length - 1;
  }
  return Buffer.from(out).toString('hex');
}

/** A path's meaning: its segments, decoded. */
const meaning = (path: string): string[] => path.split('/').map(bytesOf);

/** The path WHATWG URL resolves `path` to (dot-segments removed, `%2e` too). */
const whatwg = (path: string): string => new URL(path, 'http://h').pathname;

/** The path Node's legacy parser reads, or undefined when it throws. */
function legacy(path: string): string | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-deprecated -- the legacy parser is the point: servers still route on it
    return legacyParse(`http://h${path}`).pathname ?? undefined;
  } catch {
    return undefined;
  }
}

/** What Tomcat, Jetty and Spring resolve: each segment's `;` parameters (or `%3B` ones) dropped first, then WHATWG. */
const withoutParameters = (path: string): string => whatwg((path.split(/[?#]/)[0] ?? '').replace(/(?:;|%3b)[^/]*/gi, ''));

// Path pieces biased to what parsers disagree on: dots and their escapes, slashes and theirs,
// `;` parameters, escapes of every kind (malformed too), controls, non-ASCII, characters escaped by one parser only.
const PIECES = ['a', 'v1', 'admin', '.', '..', '%2e', '%2E', '.%2e', '%2e.', '%2f', '%2F', '%5c', '%5C', '\\', '/', '//', ';', ';x=1', '%3b', '%3B', '%00', '%41', '%7e', '%7E', '%25', '%zz', '%', '%2', '%C3%A9', 'é', '\u{1F600}', '\ud800', '\u00a0', '\ufeff', '\u2028', '\u3000', '\u0085', '\t', '\n', ' ', '\u0000', '\u007f', '?', '#', '~', '-', '_', ':', '@', '!', '$', '&', "'", '(', ')', '*', '+', ',', '=', '[', ']', '"', '<', '>', '`', '{', '}', '|', '^'];
const piece = fc.constantFrom(...PIECES);
const pathLike = fc.oneof(
  fc.array(piece, { maxLength: 12 }).map((parts) => `/${parts.join('')}`),
  fc.array(fc.array(piece, { maxLength: 3 }).map((p) => p.join('')), { minLength: 1, maxLength: 6 }).map((segs) => `/${segs.join('/')}`),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }).map((s) => `/${s}`),
);

const DOT = new Set(['.', '..']);
const UNRESERVED = /[A-Za-z0-9._~-]/;

describe('normalizePath (fuzz)', () => {
  it('never throws; what it accepts is in normal form: no dot or empty segment, no backslash, control or encoded slash, escapes upper case and needed', () => {
    fuzz(fc.property(pathLike, (raw) => {
      const n = normalizePath(raw);
      if (!n.ok) return;
      for (const p of [n.path, n.plain]) {
        expect(p.startsWith('/')).toBe(true);
        // eslint-disable-next-line no-control-regex -- finding control characters is the point
        expect(p).not.toMatch(/\/\/|\\|[\x00-\x1f\x7f?#]/);
        expect(p.split('/').slice(1).some((s) => DOT.has(s))).toBe(false);
        for (const m of p.matchAll(/%(..)/g)) {
          const hex = m[1] ?? '';
          expect(hex).toMatch(/^[0-9A-F]{2}$/);
          const code = parseInt(hex, 16);
          expect(UNRESERVED.test(String.fromCharCode(code)) || code === 0x2f || code === 0x5c || code === 0).toBe(false);
        }
      }
      expect(n.plain).not.toMatch(/;|%3B/);
    }), 2000);
  });

  it('is idempotent, and ignores the query', () => {
    fuzz(fc.property(pathLike, fc.string({ maxLength: 10 }), (raw, query) => {
      const n = normalizePath(raw);
      if (!n.ok) return;
      expect(normalizePath(n.path)).toEqual(n);
      expect(normalizePath(n.plain)).toEqual({ ok: true, path: n.plain, plain: n.plain });
      if (!/[?#]/.test(raw)) expect(normalizePath(`${raw}?${query}`)).toEqual(n);
    }), 2000);
  });

  it('what it accepts reads the same to WHATWG URL, to url.parse and to a parameter-dropping server as the path it returns', () => {
    fuzz(fc.property(pathLike, (raw) => {
      const n = normalizePath(raw);
      if (!n.ok) return;
      // The input, where both parsers agree on what it means, means what the normal form means.
      const w = whatwg(raw);
      const l = legacy(raw);
      if (l !== undefined && meaning(w).join('/') === meaning(l).join('/')) expect(meaning(n.path)).toEqual(meaning(w));
      // The normal form is a fixed point of both, so a server resolving it reaches what was judged.
      expect(meaning(whatwg(n.path))).toEqual(meaning(n.path));
      expect(meaning(legacy(n.path) ?? '')).toEqual(meaning(n.path));
      // Every input it accepts resolves (WHATWG, dot-segments and `%2e` included) to what it judged.
      expect(meaning(w)).toEqual(meaning(n.path));
      // A server dropping `;` parameters reaches `plain`, which deny rules are matched against.
      expect(meaning(withoutParameters(raw))).toEqual(meaning(n.plain));
    }), 2000);
  });
});

const TD = 'airlock.test';
const ENGINE = new PolicyEngine(parsePolicyText(`
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: all }
spec: { selector: { namespace: agents } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: v1 }
spec:
  from: { segments: [all] }
  to: { segments: [all] }
  rules: [ { paths: ["/v1/*"] } ]
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: no-admin }
spec:
  from: { segments: [all] }
  to: { segments: [all] }
  rules: [ { paths: ["/v1/admin/*"] } ]
  action: deny
`, 'p.yaml'), TD);
const AGENT = parseSpiffeId(`spiffe://${TD}/ns/agents/sa/a`);

/** Whether a resolved path is `prefix` or below it. */
const within = (resolved: string, prefix: string): boolean => {
  const m = meaning(resolved);
  const p = meaning(prefix);
  return p.every((s, i) => m[i] === s);
};

describe('path rules (fuzz)', () => {
  it('an allowed path never resolves, for WHATWG URL or a parameter-dropping server, outside /v1/ or into /v1/admin/', () => {
    const under = fc.array(fc.array(piece, { minLength: 1, maxLength: 3 }).map((p) => p.join('')), { maxLength: 5 }).chain((segs) =>
      fc.constantFrom('/v1/', '/v1/admin/', '/v1;x/', '/v1/admin;x/', '/v1/%61dmin/', '/v1/ADMIN/', '/v').map((prefix) => `${prefix}${segs.join('/')}`),
    );
    fuzz(fc.property(fc.oneof(under, pathLike), (raw) => {
      const d = ENGINE.evaluate({ source: AGENT, destination: toAgent(AGENT), port: 80, method: 'GET', path: raw });
      if (!d.allow) return;
      for (const resolved of [whatwg(raw), withoutParameters(raw)]) {
        expect(within(resolved, '/v1') && !within(resolved, '/v1/admin')).toBe(true);
      }
    }), 2000);
  });

});
