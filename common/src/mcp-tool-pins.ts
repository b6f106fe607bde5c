import { hash } from 'node:crypto';
import { canonicalJson } from './canonical-json.ts';

/**
 * MCP tool pinning, the part sidecar and control plane share: the digest of a tool definition as
 * listed by a server's `tools/list` answer, the poisoning detectors run on it, and the bounds of
 * what a sidecar reports. The control plane pins the digest per server (trust on first use, or
 * an operator's accept) and acts on a change; see control-plane/src/mcp-pins/.
 */

/** At most this many tools are reported per tools/list answer (the control plane refuses more). */
export const MAX_PINNED_TOOLS = 1000;
/** A tool name longer than this is not reported (its tool is then removed from the answer). */
export const MAX_PINNED_TOOL_NAME = 256;
/** The nesting an inputSchema may have to be hashed; a deeper one is not reported (its tool is removed). */
export const MAX_TOOL_SCHEMA_DEPTH = 64;

/** What a sidecar reports of one listed tool: never its description. */
export interface ListedTool {
  readonly name: string;
  /** Lowercase hex SHA-256 of the canonical JSON (RFC 8785) of {name, description, inputSchema}. */
  readonly hash: string;
  /** The detectors that flagged its description or schema, as `id@version` (empty: none). */
  readonly flags: readonly string[];
}

/**
 * The digest of a tool definition: name, description and inputSchema, canonical JSON (sorted keys),
 * SHA-256. Other fields (title, annotations) are not pinned. Undefined when it cannot be hashed
 * (an inputSchema nested deeper than MAX_TOOL_SCHEMA_DEPTH).
 */
export function toolDigest(tool: { readonly name: string; readonly description?: unknown; readonly inputSchema?: unknown }): string | undefined {
  try {
    return hash('sha256', canonicalJson({ name: tool.name, description: tool.description, inputSchema: tool.inputSchema }, MAX_TOOL_SCHEMA_DEPTH + 2));
  } catch {
    return undefined;
  }
}

/** A named, versioned check for a known tool-poisoning pattern. A change to what it matches bumps its version. */
export interface PoisoningDetector {
  readonly id: string;
  readonly version: number;
  /** Documentation: what it looks for. */
  readonly looksFor: string;
  /** On the tool's text (description and every string of its inputSchema), as written. */
  matches(text: string): boolean;
}

// U+200B–U+200F (zero-width, LRM/RLM), U+202A–U+202E (bidi embeddings and overrides), U+2060–U+2064
// (word joiner, invisible operators), U+2066–U+2069 (bidi isolates), U+FEFF (BOM / ZWNBSP), tag characters U+E0000–U+E007F.
const INVISIBLE = /[\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]|[\u{E0000}-\u{E007F}]/u;
const INVISIBLE_ALL = new RegExp(INVISIBLE.source, 'gu');

/** Lower case, invisible characters dropped, runs of white space as one space: "ig\u200Bnore  previous" reads "ignore previous". */
function plain(text: string): string {
  return text.replace(INVISIBLE_ALL, '').toLowerCase().replace(/\s+/g, ' ');
}

const HIDDEN_INSTRUCTIONS = [
  /\b(ignore|disregard|forget|override) (all |any )?(the )?(previous|prior|above|earlier|preceding|other|your) (instructions|directions|rules|prompts?|guidelines)/,
  /\b(do not|don't|never) (tell|inform|mention|reveal|show|alert|notify) (this |it |anything )?(to )?the user/,
  /\bwithout (telling|informing|notifying|alerting) the user/,
  /\b(the user|user) (must|should) not (know|be told|see|notice)/,
  /\b(before|after) (using|calling) (this|any|the) tool,? (you must|always|first)/,
  /\b(new|updated|real|actual) (system )?instructions:/,
  /\b(reveal|print|repeat|send|output|leak) (your |the )?(system prompt|instructions)/,
];
const INSTRUCTION_TAGS = /<\/?\s*(important|system|instructions?|secret|hidden|admin|critical)\b[^>]{0,40}>|\[\/?inst\]|<\|im_start\|>|<\|im_end\|>|<\|system\|>/;
const EXFILTRATION = [
  /~\/\.ssh|\bid_(rsa|ed25519|ecdsa)\b|\.aws\/credentials|\.netrc\b|mcp\.json|\.cursor\/|claude_desktop_config/,
  /\b(private keys?|api[ _-]?keys?|access tokens?|secrets|passwords|credentials|conversation history|chat history|previous messages)\b.{0,80}\b(send|pass|forward|upload|exfiltrate|leak|append)\b/,
  /\b(send|pass|forward|upload|exfiltrate|leak|append)\b.{0,80}\b(private keys?|api[ _-]?keys?|access tokens?|secrets|passwords|credentials|conversation history|chat history|previous messages)\b/,
  /\b(send|forward|upload|post|exfiltrate|copy) (it|them|this|the (contents?|data|file|result|output)s?) to (https?:\/\/|[a-z0-9.-]+@|the (following|address|url|email))/,
];

/** The detectors every sidecar runs, in the order they are reported. */
export const POISONING_DETECTORS: readonly PoisoningDetector[] = [
  {
    id: 'hidden-instructions',
    version: 1,
    looksFor: 'instructions to the model: "ignore previous instructions", "do not tell the user", "before using this tool you must …", "reveal your system prompt"',
    matches: (text) => {
      const p = plain(text);
      return HIDDEN_INSTRUCTIONS.some((re) => re.test(p));
    },
  },
  { id: 'instruction-tags', version: 1, looksFor: 'markup aimed at the model: <IMPORTANT>, <system>, <instructions>, [INST], <|im_start|>', matches: (text) => INSTRUCTION_TAGS.test(plain(text)) },
  { id: 'invisible-unicode', version: 1, looksFor: 'invisible or bidi characters: U+200B–U+200F, U+202A–U+202E, U+2060–U+2064, U+2066–U+2069, U+FEFF, tag characters U+E0000–U+E007F', matches: (text) => INVISIBLE.test(text) },
  {
    id: 'exfiltration-hint',
    version: 1,
    looksFor: 'secrets named with a verb sending them on (keys, tokens, credentials, chat history), credential file paths (~/.ssh, id_rsa, .aws/credentials, mcp.json), "send it to <address>"',
    matches: (text) => {
      const p = plain(text);
      return EXFILTRATION.some((re) => re.test(p));
    },
  },
];

/** Every string of a JSON value (an inputSchema: its descriptions, titles, enum values), bounded in depth. */
function stringsOf(value: unknown, out: string[], depth: number): void {
  if (typeof value === 'string') out.push(value);
  else if (depth > 0 && value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      out.push(k);
      stringsOf(v, out, depth - 1);
    }
  }
}

/** The detectors (`id@version`) that flag a tool's description or any string of its inputSchema. */
export function poisoningFlags(tool: { readonly description?: unknown; readonly inputSchema?: unknown }): string[] {
  const texts: string[] = [];
  stringsOf(tool.description, texts, 0);
  stringsOf(tool.inputSchema, texts, MAX_TOOL_SCHEMA_DEPTH);
  const text = texts.join('\n');
  return POISONING_DETECTORS.filter((d) => d.matches(text)).map((d) => `${d.id}@${d.version}`);
}

/** A tool of a tools/list answer, as reported: undefined when it cannot be (no name, too long a name, too deep a schema). */
export function listedTool(tool: unknown): ListedTool | undefined {
  if (tool === null || typeof tool !== 'object' || Array.isArray(tool)) return undefined;
  const t = tool as { name?: unknown; description?: unknown; inputSchema?: unknown };
  if (typeof t.name !== 'string' || t.name.length > MAX_PINNED_TOOL_NAME) return undefined;
  const digest = toolDigest({ name: t.name, description: t.description, inputSchema: t.inputSchema });
  return digest === undefined ? undefined : { name: t.name, hash: digest, flags: poisoningFlags(t) };
}
