import type { McpMessage } from '../authz/authorizer.ts';

/** Methods whose `Mcp-Name` is `params.name` (MCP 2026-07-28, Streamable HTTP standard headers). */
const NAMED_BY_NAME: ReadonlySet<string> = new Set(['tools/call', 'prompts/get']);
/** Methods whose `Mcp-Name` is `params.uri`. */
const NAMED_BY_URI: ReadonlySet<string> = new Set(['resources/read', 'resources/subscribe', 'resources/unsubscribe']);

/**
 * Why the MCP spec's `Mcp-Method` / `Mcp-Name` request headers, when sent, do not match the body
 * (or cannot be checked against it), or undefined. A header sent more than once, a body that could
 * not be read, or any difference is a mismatch: an intermediary or server that routes on the
 * headers would otherwise see another call than the one judged here (rules judge the body's values).
 * Absent headers are not required (clients before 2026-07-28 do not send them).
 */
export function specHeaderMismatch(rawHeaders: readonly string[], message: McpMessage | undefined, value: unknown): string | undefined {
  const method = valuesOf(rawHeaders, 'mcp-method');
  const name = valuesOf(rawHeaders, 'mcp-name');
  if (method.length === 0 && name.length === 0) return undefined;
  for (const [header, values] of [['Mcp-Method', method], ['Mcp-Name', name]] as const) {
    if (values.length > 1) return `the ${header} header is sent ${values.length} times`;
  }
  if (message === undefined || !('method' in message)) return `the body cannot be read to check the ${method.length > 0 ? 'Mcp-Method' : 'Mcp-Name'} header (${message?.unreadable ?? 'no body'})`;
  const sentMethod = method[0];
  if (sentMethod !== undefined && sentMethod !== message.method) return `the Mcp-Method header ${quote(sentMethod)} does not match the body's method ${quote(message.method)}`;
  const sentName = name[0];
  if (sentName === undefined) return undefined;
  const bodyName = nameIn(message.method, value);
  if (bodyName === undefined) return `the Mcp-Name header ${quote(sentName)} is sent, but the body's ${message.method} names nothing`;
  if (sentName !== bodyName) return `the Mcp-Name header ${quote(sentName)} does not match the body's ${quote(bodyName)}`;
  return undefined;
}

/**
 * Whether the request sends `Mcp-Method` or `Mcp-Name`: its body is then read (whatever the pushed
 * scope says), so that headers that contradict it are denied wherever the call goes, as README
 * "Spec headers" says, and not only where a rule reads MCP.
 */
export function sendsMcpSpecHeaders(rawHeaders: readonly string[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]?.toLowerCase();
    if (name === 'mcp-method' || name === 'mcp-name') return true;
  }
  return false;
}

/** Every value of a header (name in lower case) as sent, trimmed as Node trims them. */
function valuesOf(rawHeaders: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]?.toLowerCase() === name) out.push((rawHeaders[i + 1] ?? '').trim());
  }
  return out;
}

/** The name the spec mirrors into Mcp-Name for this method: `params.name` or `params.uri`. */
function nameIn(method: string, value: unknown): string | undefined {
  const key = NAMED_BY_NAME.has(method) ? 'name' : NAMED_BY_URI.has(method) ? 'uri' : undefined;
  if (key === undefined || typeof value !== 'object' || value === null) return undefined;
  const params = (value as { params?: unknown }).params;
  if (typeof params !== 'object' || params === null || Array.isArray(params) || !Object.hasOwn(params, key)) return undefined;
  const v = (params as Record<string, unknown>)[key];
  return typeof v === 'string' ? v : undefined;
}

/** A value from the request, bounded for a reason (the agent sent it). */
function quote(s: string): string {
  return JSON.stringify(s.length > 100 ? `${s.slice(0, 100)}…` : s);
}
