/** A request path ready for matching, or why it was refused. */
export type NormalizedPath = { readonly ok: true; readonly path: string } | { readonly ok: false; readonly why: string };

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * Normalizes a request path once, before any policy sees it: strips the query, decodes percent-
 * encoded unreserved characters only, and refuses anything two parsers could read differently
 * (dot-segments, empty segments, encoded slashes or backslashes, backslashes, NUL, control
 * characters, malformed escapes, a path not starting with "/"). Refusing beats guessing how the
 * destination app will resolve `/v1/search/../admin`.
 */
export function normalizePath(raw: string): NormalizedPath {
  const end = raw.search(/[?#]/);
  const p = end === -1 ? raw : raw.slice(0, end);
  if (!p.startsWith('/')) return refuse('it does not start with "/"');
  let out = '';
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c === 0x5c) return refuse('it contains a backslash');
    if (c < 0x20 || c === 0x7f) return refuse(c === 0 ? 'it contains NUL' : 'it contains a control character');
    if (c !== 0x25) {
      out += String.fromCharCode(c);
      continue;
    }
    const hex = p.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return refuse('it has a malformed percent-escape');
    const code = parseInt(hex, 16);
    if (code === 0x2f || code === 0x5c) return refuse('it contains an encoded slash or backslash');
    if (code === 0) return refuse('it contains NUL');
    const ch = String.fromCharCode(code);
    out += UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
    i += 2;
  }
  if (out.includes('//')) return refuse('it contains an empty segment ("//")');
  for (const segment of out.split('/')) {
    if (segment === '.' || segment === '..') return refuse('it contains a dot-segment');
  }
  return { ok: true, path: out };
}

function refuse(why: string): NormalizedPath {
  return { ok: false, why };
}
