/**
 * The arguments of an MCP `tools/call` (`params.arguments`) as a sidecar sends them to the control
 * plane for argument rules: shared so both hold the same bounds. Over a bound, the arguments are
 * not judged at all: an argument rule never allows such a call (and a deny rule on arguments denies it).
 */

/** At most this many bytes of JSON (as re-serialized by the sidecar). */
export const MAX_MCP_ARGUMENT_BYTES = 16 * 1024;
/** At most this deep (`{"a":{"b":1}}` is depth 2). */
export const MAX_MCP_ARGUMENT_DEPTH = 8;
/** At most this many values in all (objects, arrays and scalars, at any depth). */
export const MAX_MCP_ARGUMENT_VALUES = 512;

export type McpArguments = { readonly value: Readonly<Record<string, unknown>> } | { readonly unreadable: string };

/**
 * `params.arguments` of a parsed `tools/call`, checked against the bounds: its JSON text, or why it
 * cannot be judged. Absent arguments are `{}` (MCP: a tool without input).
 */
export function argumentsJson(args: unknown): { readonly json: string } | { readonly unreadable: string } {
  if (args === undefined) return { json: '{}' };
  const why = boundsProblem(args);
  if (why !== undefined) return { unreadable: why };
  const json = JSON.stringify(args);
  if (Buffer.byteLength(json) > MAX_MCP_ARGUMENT_BYTES) return { unreadable: `the tool arguments are larger than ${MAX_MCP_ARGUMENT_BYTES} bytes` };
  return { json };
}

/** Arguments as the control plane receives them: parsed and checked against the same bounds. */
export function parseArgumentsJson(json: string): McpArguments {
  if (Buffer.byteLength(json) > MAX_MCP_ARGUMENT_BYTES) return { unreadable: `the tool arguments are larger than ${MAX_MCP_ARGUMENT_BYTES} bytes` };
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return { unreadable: 'the tool arguments are not valid JSON' };
  }
  const why = boundsProblem(value);
  return why === undefined ? { value: value as Record<string, unknown> } : { unreadable: why };
}

/** Why `args` is not an object within the depth and count bounds, or undefined. */
function boundsProblem(args: unknown): string | undefined {
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return 'the tool arguments (params.arguments) are not a JSON object';
  let values = 0;
  // Iterative walk: a hostile depth cannot overflow the stack before the bound is seen.
  const stack: { readonly v: unknown; readonly depth: number }[] = [{ v: args, depth: 1 }];
  while (stack.length > 0) {
    const { v, depth } = stack.pop() as { v: unknown; depth: number };
    if (++values > MAX_MCP_ARGUMENT_VALUES) return `the tool arguments have more than ${MAX_MCP_ARGUMENT_VALUES} values`;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > MAX_MCP_ARGUMENT_DEPTH) return `the tool arguments are nested deeper than ${MAX_MCP_ARGUMENT_DEPTH}`;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push({ v: child, depth: depth + 1 });
  }
  return undefined;
}
