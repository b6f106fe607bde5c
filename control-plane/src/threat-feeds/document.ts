import { isAbsolute } from 'node:path';
import type { TreeMap, TreeNode } from '../policy/yaml-tree.ts';

/** How a feed's text is read: one entry per line (`#` comments), or a STIX 2.1 bundle of indicators. */
export type ThreatFeedFormat = 'list' | 'stix';

/** A validated ThreatFeed document: where a list of known-bad destinations comes from, and how often it is read again. */
export interface ThreatFeedDoc {
  readonly name: string;
  /** An absolute file path, or an https:// URL (verified against `caFile` when set, else Node's roots). */
  readonly source: { readonly file: string } | { readonly url: string; readonly caFile?: string };
  readonly format: ThreatFeedFormat;
  /** Seconds between reloads. */
  readonly refreshSeconds: number;
  readonly at: string;
}

export const DEFAULT_REFRESH_SECONDS = 300;
/** A day: a feed read less often than this is not "reloaded on an interval". */
const MAX_REFRESH_SECONDS = 86_400;

/** The validator's view of load.ts's problem list and field reader (one implementation of each). */
export interface SpecReader {
  add(node: TreeNode | null | undefined, message: string): void;
  fields(map: TreeMap, path: string, known: readonly string[]): Map<string, TreeNode | null>;
}

/** `spec` of a ThreatFeed: {source: {file | url, caFile?}, format?, refreshSeconds?}; problems are added, undefined when invalid. */
export function threatFeedSpec(spec: TreeMap, r: SpecReader): Omit<ThreatFeedDoc, 'name' | 'at'> | undefined {
  const s = r.fields(spec, 'spec.', ['source', 'format', 'refreshSeconds']);
  const sourceNode = s.get('source');
  let source: ThreatFeedDoc['source'] | undefined;
  if (sourceNode?.kind !== 'map') {
    r.add(sourceNode ?? spec, '"spec.source" must be a mapping with "file" (an absolute path) or "url" (https://)');
  } else {
    const f = r.fields(sourceNode, 'spec.source.', ['file', 'url', 'caFile']);
    const file = text(f.get('file'));
    const url = text(f.get('url'));
    const caFile = text(f.get('caFile'));
    for (const [key, value] of [['file', file], ['url', url], ['caFile', caFile]] as const) {
      if (f.has(key) && value === undefined) r.add(f.get(key), `"spec.source.${key}" must be a non-empty string`);
    }
    if ((file === undefined) === (url === undefined)) {
      r.add(sourceNode, '"spec.source" must have exactly one of "file" and "url"');
    } else if (file !== undefined) {
      if (!isAbsolute(file)) r.add(f.get('file'), `"spec.source.file" must be an absolute path, got "${file}"`);
      else if (caFile !== undefined) r.add(f.get('caFile'), '"spec.source.caFile" is for a "url" source');
      else source = { file };
    } else if (url !== undefined) {
      const problem = urlProblem(url);
      if (problem !== undefined) r.add(f.get('url'), `"spec.source.url": ${problem}`);
      else if (caFile !== undefined && !isAbsolute(caFile)) r.add(f.get('caFile'), `"spec.source.caFile" must be an absolute path, got "${caFile}"`);
      else source = { url, ...(caFile === undefined ? {} : { caFile }) };
    }
  }
  const formatNode = s.get('format');
  const format = formatNode === undefined ? 'list' : text(formatNode);
  if (format !== 'list' && format !== 'stix') r.add(formatNode, '"spec.format" must be "list" or "stix"');
  const refreshNode = s.get('refreshSeconds');
  const refresh = refreshNode === undefined ? DEFAULT_REFRESH_SECONDS : refreshNode?.kind === 'scalar' ? refreshNode.value : undefined;
  const refreshSeconds = typeof refresh === 'number' && Number.isInteger(refresh) && refresh >= 1 && refresh <= MAX_REFRESH_SECONDS ? refresh : undefined;
  if (refreshSeconds === undefined) r.add(refreshNode, `"spec.refreshSeconds" must be a whole number from 1 to ${MAX_REFRESH_SECONDS}`);
  if (source === undefined || (format !== 'list' && format !== 'stix') || refreshSeconds === undefined) return undefined;
  return { source, format, refreshSeconds };
}

function text(node: TreeNode | null | undefined): string | undefined {
  return node?.kind === 'scalar' && typeof node.value === 'string' && node.value !== '' ? node.value : undefined;
}

function urlProblem(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `"${url}" is not a URL`;
  }
  if (u.protocol !== 'https:') return `must be https:// (a feed decides what agents may reach: it is fetched over verified TLS only), got "${url}"`;
  if (u.username !== '' || u.password !== '') return 'must not carry credentials (they would be stored in the policy)';
  return undefined;
}
