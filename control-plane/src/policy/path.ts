/**
 * A request path ready for matching, or why it was refused. `plain` is the path without its
 * segments' `;` parameters (how Tomcat, Jetty and Spring read it); the very same string when it has
 * none, so a caller can tell by `===`.
 */
export type NormalizedPath = { readonly ok: true; readonly path: string; readonly plain: string } | { readonly ok: false; readonly why: string };

/**
 * Normalizes a request path once, before any policy sees it: strips the query, decodes percent-
 * encoded unreserved characters only, and refuses anything two parsers could read differently
 * (dot-segments, empty segments, either of them also once a segment's `;` parameters are removed,
 * encoded slashes or backslashes, backslashes, NUL, control characters, spaces, malformed escapes, a path
 * not starting with "/"). Refusing beats guessing how the destination app will resolve
 * `/v1/search/../admin` or `/v1/..;/admin`.
 *
 * Runs on every decision: one pass over the characters, and a path without escapes (the usual
 * kind) is returned as it came, without building a new string.
 */
export function normalizePath(raw: string): NormalizedPath {
  const p = raw.slice(0, queryStart(raw));
  if (p.charCodeAt(0) !== 0x2f) return refuse('it does not start with "/"');
  let out = '';
  /** How much of `p` is already in `out` (or, while 0, that nothing had to be decoded). */
  let copied = 0;
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c === 0x5c) return refuse('it contains a backslash');
    // A space is no request-target character: WHATWG URL trims one at the end, and url.parse (what
    // Express routes on for such paths) trims Unicode ones too: `/admin\u00a0` reads as `/admin` there.
    if (c <= 0x20 || c === 0x7f) return refuse(c === 0 ? 'it contains NUL' : c === 0x20 ? 'it contains a space' : 'it contains a control character');
    if (c > 0x7f && SPACE.test(p.charAt(i))) return refuse('it contains a space');
    if (c !== 0x25) continue;
    const hi = hexValue(p.charCodeAt(i + 1));
    const lo = hexValue(p.charCodeAt(i + 2));
    if (hi === -1 || lo === -1) return refuse('it has a malformed percent-escape');
    const code = hi * 16 + lo;
    if (code === 0x2f || code === 0x5c) return refuse('it contains an encoded slash or backslash');
    if (code === 0) return refuse('it contains NUL');
    out += p.slice(copied, i) + (isUnreserved(code) ? String.fromCharCode(code) : `%${p.slice(i + 1, i + 3).toUpperCase()}`);
    copied = i + 3;
    i += 2;
  }
  const path = copied === 0 ? p : out + p.slice(copied);
  if (path.includes('//')) return refuse('it contains an empty segment ("//")');
  if (hasDotSegment(path)) return refuse('it contains a dot-segment');
  // Tomcat, Jetty and Spring drop a segment's `;` parameters before resolving it: `/v1/..;/admin`
  // is `/v1/../admin` there, `/v1/;/admin` is `/v1//admin`; `%3B` too, for a server that decodes first.
  if (path.includes(';') || (copied !== 0 && path.includes('%3B'))) {
    const plain = withoutParameters(path);
    if (typeof plain !== 'string') return refuse(plain.why);
    return { ok: true, path, plain };
  }
  return { ok: true, path, plain: path };
}

/** What String.prototype.trim strips (and url.parse with it): Unicode spaces, line separators, the BOM. */
const SPACE = /\s/;

function refuse(why: string): NormalizedPath {
  return { ok: false, why };
}

/** Where the query or fragment starts: the path ends there. */
function queryStart(raw: string): number {
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x3f || c === 0x23) return i;
  }
  return raw.length;
}

/** A segment `.` or `..` in a path that starts with "/". */
function hasDotSegment(path: string): boolean {
  for (let i = path.indexOf('/.'); i !== -1; i = path.indexOf('/.', i + 1)) {
    const next = path.charCodeAt(i + 2); // NaN past the end
    if (Number.isNaN(next) || next === 0x2f) return true;
    if (next === 0x2e) {
      const after = path.charCodeAt(i + 3);
      if (Number.isNaN(after) || after === 0x2f) return true;
    }
  }
  return false;
}

/**
 * The path with each segment's parameters removed (from the first `;`, or an encoded `%3B` that a
 * decoding server may read as one), or why that is ambiguous: a segment that is then a dot-segment
 * (`..;`, `.;x=y`) or empty (`/;x/`). `path` starts with "/", its escapes in upper case.
 */
function withoutParameters(path: string): string | { why: string } {
  const names: string[] = [];
  for (let start = 1; start <= path.length; ) {
    let end = path.indexOf('/', start);
    if (end === -1) end = path.length;
    const segment = path.slice(start, end);
    const semi = segment.indexOf(';');
    const encoded = segment.indexOf('%3B');
    const cut = semi === -1 ? encoded : encoded === -1 ? semi : Math.min(semi, encoded);
    const name = cut === -1 ? segment : segment.slice(0, cut);
    if (cut !== -1) {
      if (name === '.' || name === '..') return { why: `it contains a dot-segment ("${name}" once its ";" parameters are removed)` };
      if (name === '') return { why: 'it contains an empty segment (once its ";" parameters are removed)' };
    }
    names.push(name);
    start = end + 1;
  }
  return `/${names.join('/')}`;
}

/** 0-15 for a hex digit's char code, else -1 (NaN past the end included). */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** RFC 3986 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~". */
function isUnreserved(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
}
