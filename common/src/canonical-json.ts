/**
 * RFC 8785 (JCS) for JSON values: object keys sorted by UTF-16 code units, no whitespace, numbers
 * and strings as JSON.stringify writes them (which JCS adopts). Properties whose value is undefined
 * are left out, as JSON.stringify does. Shared: the audit chain hashes events with it, and MCP tool
 * pinning hashes tool definitions with it (sidecar and control plane must agree byte for byte).
 * `maxDepth` bounds the nesting of a value from an untrusted peer (the recursion is not a stack risk).
 */
export function canonicalJson(value: unknown, maxDepth = Infinity): string {
  return canonical(value, maxDepth);
}

function canonical(value: unknown, depth: number): string {
  if (value === null || typeof value !== 'object') {
    const s = JSON.stringify(value) as string | undefined;
    // undefined, a function or a symbol has no JSON form; a caller passing one is a bug.
    if (s === undefined) throw new TypeError(`no JSON form for a ${typeof value}`);
    return s;
  }
  if (depth <= 0) throw new RangeError('the value is nested too deep');
  if (Array.isArray(value)) return `[${value.map((v: unknown) => (v === undefined ? 'null' : canonical(v, depth - 1))).join(',')}]`;
  const obj = value as Record<string, unknown>;
  let out = '';
  for (const key of Object.keys(obj).sort()) {
    const v = obj[key];
    if (v === undefined) continue;
    out += `${out === '' ? '' : ','}${JSON.stringify(key)}:${canonical(v, depth - 1)}`;
  }
  return `{${out}}`;
}
