import { connectionNamed, isUnsentHeader, MAX_AUTHZ_HEADER_BYTES, MAX_AUTHZ_HEADERS } from '@airlock/common/headers';

export interface AuthzHeaders {
  /** Lower-case names, one entry per occurrence, in the order first seen. */
  readonly entries: readonly { readonly name: string; readonly value: string }[];
  /** Some header was left out by the bounds: rules on names not sent fail closed. */
  readonly incomplete: boolean;
}

/**
 * The request headers sent with an Authorize request, from `rawHeaders` (every occurrence, as
 * received, so a repeated header is seen as repeated): never secrets or hop-by-hop headers (see
 * isUnsentHeader), nor headers the Connection header names; at most MAX_AUTHZ_HEADERS occurrences
 * and MAX_AUTHZ_HEADER_BYTES of names and values. A name goes with all its occurrences or not at
 * all, so the control plane never mistakes a partly sent header for a whole one.
 */
export function authzHeaders(rawHeaders: readonly string[]): AuthzHeaders {
  const byName = new Map<string, string[]>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] ?? '').toLowerCase();
    const value = rawHeaders[i + 1] ?? '';
    const list = byName.get(name);
    if (list === undefined) byName.set(name, [value]);
    else list.push(value);
  }
  const named = connectionNamed(byName.get('connection'));
  const entries: { name: string; value: string }[] = [];
  let bytes = 0;
  let incomplete = false;
  for (const [name, values] of byName) {
    if (isUnsentHeader(name, named)) continue;
    let size = 0;
    for (const v of values) size += Buffer.byteLength(name) + Buffer.byteLength(v);
    if (entries.length + values.length > MAX_AUTHZ_HEADERS || bytes + size > MAX_AUTHZ_HEADER_BYTES) {
      incomplete = true;
      continue;
    }
    bytes += size;
    for (const value of values) entries.push({ name, value });
  }
  return { entries, incomplete };
}
