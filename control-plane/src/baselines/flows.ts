import { normalizePath } from '../policy/path.ts';

/** What a flow names, and the bounds that keep a flow key small whatever a caller sends. */
export const MAX_TEMPLATE_SEGMENTS = 16;
const MAX_SEGMENT_CHARS = 64;
export const MAX_FLOW_CHARS = 512;

const NUMBER = /^[0-9]+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LONG_HEX = /^[0-9a-f]{16,}$/i;

/**
 * A request path as a template: the query dropped, the path normalized as policies see it, and each
 * segment that is an id (a number, a UUID, 16 or more hex digits) written `{id}`, so `/users/42` and
 * `/users/43` are one flow. Past MAX_TEMPLATE_SEGMENTS segments the rest is `…`; a longer segment
 * is cut. A path policies refuse to read is one flow, `{unreadable}` (such a call is denied anyway).
 */
export function pathTemplate(raw: string): string {
  const n = normalizePath(raw);
  if (!n.ok) return '{unreadable}';
  const parts = n.path.split('/');
  const out: string[] = [];
  // parts[0] is the empty string before the leading "/".
  for (let i = 1; i < parts.length; i++) {
    if (out.length === MAX_TEMPLATE_SEGMENTS) {
      out.push('…');
      break;
    }
    const seg = parts[i] ?? '';
    out.push(NUMBER.test(seg) || UUID.test(seg) || LONG_HEX.test(seg) ? '{id}' : seg.length > MAX_SEGMENT_CHARS ? `${seg.slice(0, MAX_SEGMENT_CHARS)}…` : seg);
  }
  return `/${out.join('/')}`;
}

/** The parts of a call a flow is made of. */
export interface FlowCall {
  /** The destination agent's SPIFFE ID, or `host:port` for an external one. */
  readonly destination: string;
  readonly method: string;
  readonly path: string;
  /** The JSON-RPC method of an MCP call ('' for none) and the tool of a tools/call. */
  readonly mcpMethod: string;
  readonly mcpTool: string;
}

/** `DEST METHOD /path/{id}` with ` tool=NAME` (an MCP tools/call) or ` mcp=METHOD` (another MCP method): at most MAX_FLOW_CHARS. */
export function flowOf(c: FlowCall): string {
  const mcp = c.mcpMethod === 'tools/call' ? ` tool=${c.mcpTool}` : c.mcpMethod === '' ? '' : ` mcp=${c.mcpMethod}`;
  const flow = `${c.destination} ${c.method} ${pathTemplate(c.path)}${mcp}`;
  return flow.length > MAX_FLOW_CHARS ? flow.slice(0, MAX_FLOW_CHARS) : flow;
}
