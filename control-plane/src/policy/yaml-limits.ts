import { Composer, CST, Lexer, Parser, type Document, type LineCounter } from 'yaml';
import { AirlockError, ErrorCode } from '@airlock/common/errors';

/**
 * Bounds on the work of reading policy YAML. Nesting and keys per mapping bound every read (files
 * too): `yaml` composes recursively (10,000 levels overflowed the stack, reported as "Maximum call
 * stack size exceeded" at some position) and checks a mapping's keys pairwise (100,000 keys in one
 * mapping took minutes). Documents, nodes and aliases bound what one admin request may cost.
 */
export interface YamlLimits {
  /** Levels of nested collections (a valid policy needs about 8). */
  readonly depth: number;
  /** Keys in one mapping (a valid policy has at most 32, in `labels`). */
  readonly mappingKeys: number;
  readonly documents: number;
  /** Scalars, aliases, flow collections and block sequence items. */
  readonly nodes: number;
  /** Aliases (`*a`): a policy never needs one (they are read as nodes, never expanded). */
  readonly aliases: number;
}

/** Policy files (start, `airlock validate`) and stored versions: the structural bounds only. */
export const FILE_LIMITS: YamlLimits = { depth: 64, mappingKeys: 64, documents: Infinity, nodes: Infinity, aliases: Infinity };

/** A policy bundle sent to the admin API (HTTP or gRPC). */
export const ADMIN_LIMITS: YamlLimits = { ...FILE_LIMITS, documents: 10_000, nodes: 200_000, aliases: 64 };

/** A limit refusal: `invalid policy:` with the position, as parse problems read, but its own code (413). */
export function limitError(where: string, what: string): AirlockError {
  return new AirlockError(ErrorCode.TooLarge, `invalid policy:\n  - ${where}: ${what}`);
}

// A document marker opening a line: `---` or `...`, alone or before a space.
const MARKER = /^(?:---|\.\.\.)(?=[ \t\r\n]|$)/gm;

/**
 * The cheap check before any parse (a regex over the text, no allocation per line): more document
 * markers than `limits.documents` is refused at the first marker over it. The parse counts again,
 * exactly; this only saves a parse of a text made of markers.
 */
export function checkDocumentMarkers(text: string, file: string, limits: YamlLimits): void {
  if (!Number.isFinite(limits.documents)) return;
  MARKER.lastIndex = 0;
  let count = 0;
  for (let m = MARKER.exec(text); m !== null; m = MARKER.exec(text)) {
    if (++count > limits.documents) {
      const line = countLines(text, m.index);
      throw limitError(`${file}:${line}:1`, `more than ${limits.documents} documents (the limit)`);
    }
  }
}

function countLines(text: string, end: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < end; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

/**
 * `parseAllDocuments` (what `yaml` does: lexer, parser, composer) with every limit checked as the
 * text is read, so an over-limit text is refused at the first lexeme over a limit, before the
 * composer (the costly, recursive part) sees it. Throws AIRLOCK_TOO_LARGE naming the limit and
 * where it was exceeded.
 */
export function parseYamlDocuments(text: string, file: string, lines: LineCounter, limits: YamlLimits): Document.Parsed[] {
  checkDocumentMarkers(text, file, limits);
  const parser = new Parser(lines.addNewLine);
  const composer = new Composer({ prettyErrors: false, uniqueKeys: true });
  const refuse = (offset: number, what: string): never => {
    const pos = lines.linePos(offset);
    throw limitError(`${file}:${pos.line}:${pos.col}`, `${what} (the limit)`);
  };
  const docs: Document.Parsed[] = [];
  let documents = 0;
  let nodes = 0;
  let aliases = 0;
  let scalarNext = false;
  const take = (tokens: Iterable<CST.Token>): void => {
    for (const token of tokens) {
      if (token.type === 'document' && ++documents > limits.documents) refuse(token.offset, `more than ${limits.documents} documents`);
      for (const doc of composer.next(token)) docs.push(doc);
    }
  };
  lines.addNewLine(0);
  for (const lexeme of new Lexer().lex(text)) {
    const at = parser.offset;
    // The parser's rule: the lexeme after a scalar marker is the scalar's source, whatever it reads as.
    if (scalarNext) scalarNext = false;
    else {
      const type = CST.tokenType(lexeme);
      if (type === 'scalar') scalarNext = true;
      if (type === 'alias' && ++aliases > limits.aliases) refuse(at, `more than ${limits.aliases} aliases`);
      if ((type === 'scalar' || type === 'alias' || type === 'flow-map-start' || type === 'flow-seq-start' || type === 'seq-item-ind' || type === 'block-scalar-header') && ++nodes > limits.nodes) {
        refuse(at, `more than ${limits.nodes} YAML nodes`);
      }
    }
    take(parser.next(lexeme));
    checkStack(parser.stack, at, limits, refuse);
  }
  take(parser.end());
  for (const doc of composer.end(false, text.length)) docs.push(doc);
  return docs;
}

/**
 * The parser's stack holds what is being built: the document, its open collections, and at most a
 * scalar or two. Counted only near the limit, so each lexeme costs O(1); a mapping's keys are
 * counted while it is being built (it is on top, or under the value being read).
 */
function checkStack(stack: readonly CST.Token[], at: number, limits: YamlLimits, refuse: (offset: number, what: string) => never): void {
  if (stack.length > limits.depth) {
    const depth = stack.filter((t) => CST.isCollection(t)).length;
    if (depth > limits.depth) refuse(at, `more than ${limits.depth} levels of nesting`);
  }
  for (let i = Math.max(0, stack.length - 3); i < stack.length; i++) {
    const t = stack[i];
    const isMapping = t?.type === 'block-map' || (t?.type === 'flow-collection' && t.start.source === '{');
    if (!isMapping || t.items.length <= limits.mappingKeys) continue;
    // The whitespace before a closing `}` on its own line opens an item with no key yet: not a key.
    const last = t.items[t.items.length - 1];
    const keys = last !== undefined && last.key == null && last.sep === undefined && last.value === undefined ? t.items.length - 1 : t.items.length;
    if (keys > limits.mappingKeys) refuse(at, `a mapping with more than ${limits.mappingKeys} keys`);
  }
}
