import { hash } from 'node:crypto';

/**
 * RFC 8785 (JCS) for the values an audit event holds: object keys sorted by UTF-16 code units,
 * no whitespace, numbers and strings as JSON.stringify writes them (which JCS adopts). Properties
 * whose value is undefined are left out, as JSON.stringify does: the hash of an event and of its
 * line read back are the same.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const s = JSON.stringify(value) as string | undefined;
    // undefined, a function or a symbol has no JSON form; a caller passing one is a bug.
    if (s === undefined) throw new TypeError(`no JSON form for a ${typeof value}`);
    return s;
  }
  if (Array.isArray(value)) return `[${value.map((v: unknown) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const obj = value as Record<string, unknown>;
  let out = '';
  for (const key of Object.keys(obj).sort()) {
    const v = obj[key];
    if (v === undefined) continue;
    out += `${out === '' ? '' : ','}${JSON.stringify(key)}:${canonicalJson(v)}`;
  }
  return `{${out}}`;
}

/** SHA-256 of an event's canonical form, hex: what the next event names as `prevHash`. */
export function hashEvent(event: object): string {
  return hash('sha256', canonicalJson(event));
}

/** The `prevHash` of a chain's first event. */
export const GENESIS_PREV_HASH = '0'.repeat(64);
