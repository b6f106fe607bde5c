import { readFileSync } from 'node:fs';
import { LineCounter, type Document } from 'yaml';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { isUnsentHeader } from '@airlock/common/headers';
import { labelKeyProblem, labelValueProblem, MAX_LABELS } from '@airlock/common/labels';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { RE2JS } from 're2js';
import { APPROVAL_FIELDS, approvalOf } from './approval.ts';
import { ARGUMENT_PATH, filePathProblem, MAX_ARGUMENT_REGEX_LENGTH } from './arguments.ts';
import { FastDocuments } from './fast-yaml.ts';
import { normalizePath } from './path.ts';
import { rateLimitSpec, type RateLimitDoc } from './rate-limit-doc.ts';
import { threatFeedSpec, type ThreatFeedDoc } from '../threat-feeds/document.ts';
import { secretsOf } from './secrets.ts';
import { baselineSpec, type BaselineDoc } from './baseline-doc.ts';
import type { ArgumentRuleDoc, ArgumentScalar, HeaderRuleDoc, McpRuleDoc, PolicyAction, PolicyDoc, PolicyDocuments, PolicyMode, RuleDoc, SegmentDoc, TlsMode, ToolChangeAction } from './types.ts';
import { checkDocumentMarkers, FILE_LIMITS, parseYamlDocuments, type YamlLimits } from './yaml-limits.ts';
import { fieldOf, treeOf, type TreeMap, type TreeNode } from './yaml-tree.ts';

const API_VERSION = 'airlock.dev/v1';
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const GLOB = /^[a-z0-9*]([-a-z0-9.*]{0,251}[a-z0-9*])?$/;
export const HOST = /^(\*\.)?[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const METHOD = /^[A-Z]{1,20}$/;
// JSON-RPC method names (`tools/call`, `notifications/initialized`) and MCP tool names, with `*`.
const MCP_NAME_GLOB = /^[A-Za-z0-9_*][-A-Za-z0-9_./*]{0,127}$/;

/** Every problem found, each as `file:line:col: message`, collected before failing. */
export class Problems {
  readonly list: string[] = [];
  /** Segment references of policies, checked once every Segment is known. */
  readonly refs: { readonly policy: string; readonly field: string; readonly segment: string; readonly node: TreeNode; readonly kind?: string }[] = [];
  readonly file: string;
  readonly #lines: LineCounter;

  constructor(file: string, lines: LineCounter) {
    this.file = file;
    this.#lines = lines;
  }

  at(node: TreeNode | null | undefined): string {
    const offset = node?.pos;
    if (offset === undefined) return this.file;
    const pos = this.#lines.linePos(offset);
    return `${this.file}:${pos.line}:${pos.col}`;
  }

  add(node: TreeNode | null | undefined, message: string): void {
    this.list.push(`${this.at(node)}: ${message}`);
  }
}

/** Reads a policy file; a missing file or any invalid document is AIRLOCK_POLICY_INVALID. */
export function loadPolicyFile(path: string): PolicyDocuments {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new AirlockError(ErrorCode.Policy, `cannot read policy file ${path}: ${errorMessage(err)}`, { cause: err });
  }
  return parsePolicyText(text, path);
}

/**
 * Parses multi-document YAML of Segment and Policy kinds; unknown fields and dangling references are
 * errors (AIRLOCK_POLICY_INVALID), and so is a text over `limits` (AIRLOCK_TOO_LARGE).
 */
export function parsePolicyText(text: string, file: string, knownSegments: ReadonlySet<string> = new Set(), limits: YamlLimits = FILE_LIMITS): PolicyDocuments {
  return parsePolicyDocuments(text, file, knownSegments, limits).docs;
}

/** One valid document of a bundle, in bundle order. */
export type ParsedDocument = { readonly kind: 'Segment'; readonly doc: SegmentDoc } | { readonly kind: 'Policy'; readonly doc: PolicyDoc } | { readonly kind: 'RateLimit'; readonly doc: RateLimitDoc } | { readonly kind: 'ThreatFeed'; readonly doc: ThreatFeedDoc } | { readonly kind: 'Baseline'; readonly doc: BaselineDoc };

export interface ParsedDocuments {
  readonly docs: PolicyDocuments;
  /** The same documents in the order they were written. */
  readonly ordered: readonly ParsedDocument[];
}

/**
 * Like parsePolicyText, also in bundle order. A fast pass (js-yaml) reads and validates first; only
 * when it cannot read the text or finds a problem does `yaml` parse again with positions, which
 * decides and reports `file:line:col` — so a valid bundle costs one fast pass, and an invalid one is
 * refused exactly as before.
 */
export function parsePolicyDocuments(text: string, file: string, knownSegments: ReadonlySet<string> = new Set(), limits: YamlLimits = FILE_LIMITS): ParsedDocuments {
  checkDocumentMarkers(text, file, limits);
  return parseFast(text, file, knownSegments, limits) ?? parsePositioned(text, file, knownSegments, false, limits);
}

/** One document of a bundle, as written: what the policy store keeps per version. */
export interface PolicyEntry {
  readonly kind: 'Segment' | 'Policy' | 'RateLimit' | 'ThreatFeed' | 'Baseline';
  readonly name: string;
  /** The document's YAML, re-serialized on its own. */
  readonly yaml: string;
}

export interface ParsedBundle {
  readonly docs: PolicyDocuments;
  readonly entries: readonly PolicyEntry[];
}

/**
 * Like parsePolicyText, also returning each document's own YAML. `knownSegments` are segments
 * defined elsewhere (the stored policy an apply merges into): references to them are not errors.
 * The YAML is `yaml`'s re-serialization of each document, so this always parses with `yaml`.
 */
export function parsePolicyBundle(text: string, file: string, knownSegments: ReadonlySet<string> = new Set(), limits: YamlLimits = FILE_LIMITS): ParsedBundle & ParsedDocuments {
  const { docs, ordered, entries } = parsePositioned(text, file, knownSegments, true, limits);
  return { docs, ordered, entries };
}

function parseFast(text: string, file: string, known: ReadonlySet<string>, limits: YamlLimits): ParsedDocuments | undefined {
  const documents = new FastDocuments(text, limits);
  const problems = new Problems(file, lineCounterOf(text));
  const valid = validate(inputsOf(documents), problems, known);
  return documents.failed || problems.list.length > 0 ? undefined : valid;
}

/** `yaml` with positions: the reference for what is valid, and the source of every message. */
function parsePositioned(text: string, file: string, known: ReadonlySet<string>, withEntries: boolean, limits: YamlLimits): ParsedDocuments & ParsedBundle {
  const lines = new LineCounter();
  const problems = new Problems(file, lines);
  const docs = parseYamlDocuments(text, file, lines, limits);
  const inputs = docs.map((doc) => ({
    root: doc.errors.length > 0 ? null : treeOf(doc.contents),
    errors: doc.errors.map((e) => {
      const pos = lines.linePos(e.pos[0]);
      return `${file}:${pos.line}:${pos.col}: ${e.message.split('\n')[0] ?? e.message}`;
    }),
  }));
  const valid = validate(inputs, problems, known);
  if (problems.list.length > 0) throw policyInvalid(problems.list);
  const entries = withEntries ? valid.ordered.map((d, i) => ({ kind: d.kind, name: d.doc.name, yaml: ownText(docs[valid.sources[i] ?? -1]?.toString() ?? '') })) : [];
  return { ...valid, entries };
}

/** Line starts of `text`, as `yaml`'s parser records them, for positions without `yaml`'s parse. */
function lineCounterOf(text: string): LineCounter {
  const lines = new LineCounter();
  lines.addNewLine(0);
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines.addNewLine(i + 1);
  return lines;
}

function* inputsOf(roots: Iterable<TreeNode | null>): Iterable<DocumentInput> {
  for (const root of roots) yield { root, errors: [] };
}

interface DocumentInput {
  /** The document's root; null for an empty document or one with syntax errors. */
  readonly root: TreeNode | null;
  readonly errors: readonly string[];
}

/** Validates documents in order; `sources[i]` is the input index of `ordered[i]`. */
function validate(inputs: Iterable<DocumentInput>, problems: Problems, knownSegments: ReadonlySet<string>): ParsedDocuments & { sources: number[] } {
  const segments: SegmentDoc[] = [];
  const policies: PolicyDoc[] = [];
  const rateLimits: RateLimitDoc[] = [];
  const baselines: BaselineDoc[] = [];
  const ordered: ParsedDocument[] = [];
  const sources: number[] = [];
  let index = -1;
  for (const { root, errors } of inputs) {
    index++;
    if (errors.length > 0) {
      problems.list.push(...errors);
      continue;
    }
    if (root === null) continue; // an empty document between separators
    if (root.kind !== 'map') {
      problems.add(root, 'each document must be a mapping with apiVersion, kind, metadata and spec');
      continue;
    }
    const top = fields(root, '', ['apiVersion', 'kind', 'metadata', 'spec'], problems);
    const apiVersion = str(top.get('apiVersion'), 'apiVersion', problems, root);
    if (apiVersion !== undefined && apiVersion !== API_VERSION) problems.add(top.get('apiVersion'), `apiVersion must be "${API_VERSION}", got "${apiVersion}"`);
    const kind = str(top.get('kind'), 'kind', problems, root);
    const name = metadataName(top.get('metadata'), problems, root);
    const spec = top.get('spec');
    if (spec?.kind !== 'map') {
      problems.add(spec ?? root, '"spec" must be a mapping');
      continue;
    }
    if (kind === 'Segment') {
      const s = segmentSpec(spec, problems);
      if (name !== undefined && s !== undefined) {
        const doc = { name, ...s, at: problems.at(root) };
        segments.push(doc);
        ordered.push({ kind, doc });
        sources.push(index);
      }
    } else if (kind === 'Policy') {
      const p = policySpec(spec, problems);
      if (name !== undefined && p !== undefined) {
        const doc = { name, ...p, at: problems.at(root) };
        policies.push(doc);
        ordered.push({ kind, doc });
        sources.push(index);
      }
      if (name !== undefined) recordRefs(name, spec, problems);
    } else if (kind === 'RateLimit') {
      const r = rateLimitSpec(name, spec, problems);
      if (name !== undefined && r !== undefined) {
        const doc = { name, ...r, at: problems.at(root) };
        rateLimits.push(doc);
        ordered.push({ kind, doc });
        sources.push(index);
      }
    } else if (kind === 'ThreatFeed') {
      const f = threatFeedSpec(spec, { add: (n, m) => problems.add(n, m), fields: (m, path, known) => fields(m, path, known, problems) });
      if (name !== undefined && f !== undefined) {
        ordered.push({ kind, doc: { name, ...f, at: problems.at(root) } });
        sources.push(index);
      }
    } else if (kind === 'Baseline') {
      const b = baselineSpec(name, spec, problems);
      if (name !== undefined && b !== undefined) {
        if (baselines.some((x) => x.name === name)) problems.add(root, `Baseline "${name}" is defined twice`);
        const doc = { name, ...b, at: problems.at(root) };
        baselines.push(doc);
        ordered.push({ kind, doc });
        sources.push(index);
      }
    } else if (kind !== undefined) {
      problems.add(top.get('kind'), `kind must be Segment, Policy, RateLimit, ThreatFeed or Baseline, got "${kind}"`);
    }
  }
  checkReferences(segments, policies, problems, knownSegments, rateLimits);
  return { docs: { segments, policies, ...(rateLimits.length === 0 ? {} : { rateLimits }), ...(baselines.length === 0 ? {} : { baselines }) }, ordered, sources };
}

export function fields(map: TreeMap, path: string, known: readonly string[], problems: Problems): Map<string, TreeNode | null> {
  const out = new Map<string, TreeNode | null>();
  for (const pair of map.items) {
    const key = pair.key;
    const k = key?.kind === 'scalar' ? String(key.value) : undefined;
    if (k === undefined || !known.includes(k)) {
      problems.add(key, `unknown field "${path}${k ?? '?'}" (known: ${known.join(', ')})`);
      continue;
    }
    out.set(k, pair.value);
  }
  return out;
}

export function str(node: TreeNode | null | undefined, field: string, problems: Problems, parent: TreeNode, required = true): string | undefined {
  if (node === undefined || node === null) {
    if (required) problems.add(parent, `"${field}" is required`);
    return undefined;
  }
  if (node.kind !== 'scalar' || typeof node.value !== 'string' || node.value === '') {
    problems.add(node, `"${field}" must be a non-empty string`);
    return undefined;
  }
  return node.value;
}

/**
 * `spec.from` of a document that selects calling segments (RateLimit, Baseline): its segment names;
 * undefined when the list is missing or bad (reported), null when `from` is no mapping (reported: the
 * document is not read further).
 */
export function sourceSegments(from: TreeNode | null | undefined, spec: TreeNode, problems: Problems): string[] | undefined | null {
  if (from?.kind !== 'map') {
    problems.add(from ?? spec, '"spec.from" must be a mapping with segments');
    return null;
  }
  const f = fields(from, 'spec.from.', ['segments'], problems);
  const segments = strList(f.get('segments'), 'spec.from.segments', problems, nameCheck);
  if (segments === undefined || segments.length === 0) problems.add(f.get('segments') ?? from, '"spec.from.segments" must list at least one segment');
  return segments;
}

export function strList(node: TreeNode | null | undefined, field: string, problems: Problems, check: (s: string) => string | undefined): string[] | undefined {
  if (node === undefined || node === null) return undefined;
  if (node.kind !== 'seq') {
    problems.add(node, `"${field}" must be a list`);
    return undefined;
  }
  const out: string[] = [];
  for (const item of node.items) {
    if (item?.kind !== 'scalar' || typeof item.value !== 'string') {
      problems.add(item ?? node, `"${field}" entries must be strings`);
      continue;
    }
    const problem = check(item.value);
    if (problem === undefined) out.push(item.value);
    else problems.add(item, `"${field}": ${problem}`);
  }
  return out;
}

function metadataName(node: TreeNode | null | undefined, problems: Problems, parent: TreeNode): string | undefined {
  if (node?.kind !== 'map') {
    problems.add(node ?? parent, '"metadata" must be a mapping with a name');
    return undefined;
  }
  const m = fields(node, 'metadata.', ['name'], problems);
  const name = str(m.get('name'), 'metadata.name', problems, node);
  if (name !== undefined && !NAME.test(name)) {
    problems.add(m.get('name'), `"metadata.name" must be a lowercase name (a-z, 0-9, "-", "."), got "${name}"`);
    return undefined;
  }
  return name;
}

const globCheck = (s: string): string | undefined => (GLOB.test(s) ? undefined : `"${s}" is not a name or a glob of lowercase letters, digits, "-", "." and "*"`);

function segmentSpec(spec: TreeMap, problems: Problems): Omit<SegmentDoc, 'name' | 'at'> | undefined {
  const s = fields(spec, 'spec.', ['selector'], problems);
  const selector = s.get('selector');
  if (selector?.kind !== 'map') {
    problems.add(selector ?? spec, '"spec.selector" must be a mapping with namespace, serviceAccounts, labels and/or spiffeIds');
    return undefined;
  }
  const sel = fields(selector, 'spec.selector.', ['namespace', 'serviceAccounts', 'spiffeIds', 'labels'], problems);
  const namespace = str(sel.get('namespace'), 'spec.selector.namespace', problems, selector, false);
  if (namespace !== undefined && globCheck(namespace) !== undefined) problems.add(sel.get('namespace'), `"spec.selector.namespace": ${globCheck(namespace) ?? ''}`);
  const listed = strList(sel.get('serviceAccounts'), 'spec.selector.serviceAccounts', problems, globCheck);
  const spiffeIds = strList(sel.get('spiffeIds'), 'spec.selector.spiffeIds', problems, spiffeIdCheck);
  const idsNode = sel.get('spiffeIds');
  if (idsNode?.kind === 'seq' && idsNode.items.length === 0) problems.add(idsNode, '"spec.selector.spiffeIds" must list at least one SPIFFE ID');
  const labels = labelsOf(sel.get('labels'), problems);
  // spiffeIds alone select exactly those agents; with namespace/serviceAccounts/labels, those agents too.
  const serviceAccounts = listed ?? (spiffeIds !== undefined && namespace === undefined && labels === undefined ? [] : ['*']);
  return { namespace, serviceAccounts, spiffeIds: spiffeIds ?? [], labels: labels ?? {} };
}

/** `spec.selector.labels`: a mapping of label keys to exact values (Kubernetes label syntax). */
function labelsOf(node: TreeNode | null | undefined, problems: Problems): Record<string, string> | undefined {
  if (node === undefined || node === null) return undefined;
  const field = 'spec.selector.labels';
  if (node.kind !== 'map' || node.items.length === 0) {
    problems.add(node, `"${field}" must be a mapping of label keys to values, with at least one label`);
    return undefined;
  }
  if (node.items.length > MAX_LABELS) problems.add(node, `"${field}" may have at most ${MAX_LABELS} labels`);
  const out: Record<string, string> = {};
  for (const pair of node.items) {
    const key = pair.key;
    const value = pair.value;
    const k = key?.kind === 'scalar' && typeof key.value === 'string' ? key.value : undefined;
    const keyProblem = k === undefined ? 'label keys must be strings' : labelKeyProblem(k);
    if (keyProblem !== undefined) {
      problems.add(key, `"${field}": ${keyProblem}`);
      continue;
    }
    // As in Kubernetes, `tier: 1` is a number, not the text "1" (`1.10` would read as "1.1"): quote it.
    const v = value?.kind === 'scalar' && typeof value.value === 'string' ? value.value : undefined;
    const valueProblem = v === undefined ? `the value of "${k ?? ''}" must be a string (quote numbers and booleans)` : labelValueProblem(v);
    if (valueProblem !== undefined) {
      problems.add(value ?? key, `"${field}": ${valueProblem}`);
      continue;
    }
    out[k ?? ''] = v ?? '';
  }
  return out;
}

/** Exact SPIFFE IDs of the shape Airlock issues (no globs: `*` is not a Kubernetes name). */
const spiffeIdCheck = (s: string): string | undefined => {
  try {
    parseSpiffeId(s);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : 'not a SPIFFE ID';
  }
};

function policySpec(spec: TreeMap, problems: Problems): Omit<PolicyDoc, 'name' | 'at'> | undefined {
  const s = fields(spec, 'spec.', ['from', 'to', 'rules', 'action', 'mode'], problems);
  const from = s.get('from');
  const to = s.get('to');
  if (from?.kind !== 'map') {
    problems.add(from ?? spec, '"spec.from" must be a mapping with segments');
    return undefined;
  }
  if (to?.kind !== 'map') {
    problems.add(to ?? spec, '"spec.to" must be a mapping with segments or hosts (and optional ports)');
    return undefined;
  }
  const f = fields(from, 'spec.from.', ['segments'], problems);
  const fromSegments = strList(f.get('segments'), 'spec.from.segments', problems, nameCheck);
  if (fromSegments === undefined || fromSegments.length === 0) problems.add(f.get('segments') ?? from, '"spec.from.segments" must list at least one segment');
  const t = fields(to, 'spec.to.', ['segments', 'hosts', 'ports', 'tls', 'secrets'], problems);
  const toSegments = strList(t.get('segments'), 'spec.to.segments', problems, nameCheck);
  const toHosts = strList(t.get('hosts'), 'spec.to.hosts', problems, (h) =>
    HOST.test(h) ? undefined : `"${h}" is not a lowercase host name or "*.suffix"`,
  );
  if ((toSegments === undefined) === (toHosts === undefined)) problems.add(to, '"spec.to" needs exactly one of "segments" or "hosts"');
  const toPorts = ports(t.get('ports'), problems);
  const rules = rulesOf(s.get('rules'), problems);
  const action = enumOf<PolicyAction>(s.get('action'), 'spec.action', ['allow', 'deny'], problems, spec, undefined);
  const mode = enumOf<PolicyMode>(s.get('mode'), 'spec.mode', ['enforce', 'dry-run'], problems, spec, 'enforce');
  const tls = tlsOf(t.get('tls'), to, toSegments !== undefined, action, problems);
  if (action === 'deny' && rules.some((r) => r.approval !== undefined)) problems.add(spec, '"spec.rules[].approve" belongs to allow policies: a deny needs no approval');
  const secrets = secretsOf(t.get('secrets'), { toSegments: toSegments !== undefined, deny: action === 'deny' }, (node, message) => problems.add(node, message));
  if (fromSegments === undefined || action === undefined || mode === undefined) return undefined;
  return { fromSegments, toSegments, toHosts, toPorts, rules, ...(tls === undefined ? {} : { tls }), ...(secrets === undefined ? {} : { secrets }), action, mode };
}

/** `spec.to.tls`: how an allowed external host is reached (see TlsMode); not for segments nor for a deny. */
function tlsOf(node: TreeNode | null | undefined, to: TreeMap, toSegments: boolean, action: PolicyAction | undefined, problems: Problems): TlsMode | undefined {
  if (node === undefined) return undefined;
  const tls = enumOf<TlsMode>(node, 'spec.to.tls', ['inspect', 'originate'], problems, to, undefined);
  if (tls === undefined) return undefined;
  if (toSegments) {
    problems.add(node, '"spec.to.tls" is for policies to hosts: calls to segments are mTLS between sidecars, and always seen as HTTP');
    return undefined;
  }
  if (action === 'deny') {
    problems.add(node, '"spec.to.tls" is for allow policies: it says how an allowed host is reached (a deny policy\'s rules apply to the requests an inspecting allow lets the sidecar see)');
    return undefined;
  }
  return tls;
}

export function recordRefs(policy: string, spec: TreeMap, problems: Problems, kind = 'Policy'): void {
  for (const [side, field] of [['from', 'spec.from.segments'], ['to', 'spec.to.segments']] as const) {
    const list = fieldOf(fieldOf(spec, side), 'segments');
    if (list?.kind !== 'seq') continue;
    for (const item of list.items) {
      if (item?.kind === 'scalar' && typeof item.value === 'string') problems.refs.push({ policy, field, segment: item.value, node: item, kind });
    }
  }
}

export const nameCheck = (s: string): string | undefined => (NAME.test(s) ? undefined : `"${s}" is not a segment name`);

export function ports(node: TreeNode | null | undefined, problems: Problems): number[] {
  if (node === undefined || node === null) return [];
  if (node.kind !== 'seq') {
    problems.add(node, '"spec.to.ports" must be a list of port numbers');
    return [];
  }
  const out: number[] = [];
  for (const item of node.items) {
    const v = item?.kind === 'scalar' ? item.value : undefined;
    if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535) out.push(v);
    else problems.add(item ?? node, '"spec.to.ports" entries must be port numbers 1..65535');
  }
  return out;
}

function rulesOf(node: TreeNode | null | undefined, problems: Problems): RuleDoc[] {
  if (node === undefined || node === null) return [];
  if (node.kind !== 'seq') {
    problems.add(node, '"spec.rules" must be a list');
    return [];
  }
  const out: RuleDoc[] = [];
  for (const item of node.items) {
    if (item?.kind !== 'map') {
      problems.add(item ?? node, '"spec.rules" entries must be mappings with methods and/or paths');
      continue;
    }
    const r = fields(item, 'spec.rules[].', ['methods', 'paths', 'mcp', 'headers', ...APPROVAL_FIELDS], problems);
    const methods = strList(r.get('methods'), 'spec.rules[].methods', problems, (m) =>
      METHOD.test(m) ? undefined : `"${m}" is not an upper-case HTTP method (methods match case-sensitively)`,
    ) ?? [];
    const paths = strList(r.get('paths'), 'spec.rules[].paths', problems, pathCheck) ?? [];
    const mcp = mcpOf(r.get('mcp'), problems);
    const approval = approvalOf(r, item, mcp, problems);
    out.push({ methods, paths, mcp, headers: headersOf(r.get('headers'), problems), ...(approval === undefined ? {} : { approval }) });
  }
  return out;
}

function mcpOf(node: TreeNode | null | undefined, problems: Problems): McpRuleDoc | undefined {
  if (node === undefined || node === null) return undefined;
  if (node.kind !== 'map') {
    problems.add(node, '"spec.rules[].mcp" must be a mapping with methods and/or tools');
    return undefined;
  }
  const m = fields(node, 'spec.rules[].mcp.', ['methods', 'tools', 'arguments', 'onToolChange'], problems);
  const methods = strList(m.get('methods'), 'spec.rules[].mcp.methods', problems, (s) =>
    MCP_NAME_GLOB.test(s) ? undefined : `"${s}" is not a JSON-RPC method name or glob (letters, digits, "_", "-", ".", "/", "*")`,
  ) ?? [];
  const tools = strList(m.get('tools'), 'spec.rules[].mcp.tools', problems, (s) =>
    MCP_NAME_GLOB.test(s) ? undefined : `"${s}" is not a tool name or glob (letters, digits, "_", "-", ".", "/", "*")`,
  ) ?? [];
  const args = argumentsOf(m.get('arguments'), problems);
  if (args.length > 0 && tools.length === 0) problems.add(m.get('arguments'), '"spec.rules[].mcp.arguments" needs "tools": argument names belong to tools (write tools: ["*"] for any tool)');
  const change = m.get('onToolChange');
  const onToolChange = change === undefined || change === null ? undefined : enumOf<ToolChangeAction>(change, 'spec.rules[].mcp.onToolChange', ['alert', 'deny', 'quarantine'], problems, node, undefined);
  return { methods, tools, arguments: args, ...(onToolChange === undefined ? {} : { onToolChange }) };
}

/** At most this many argument conditions per rule. */
const MAX_ARGUMENT_CONDITIONS = 32;
const ARGUMENT_FIELDS = ['path', 'present', 'equals', 'oneOf', 'glob', 'filePath', 'regex', 'min', 'max', 'minLength', 'maxLength', 'loggable'];

function argumentsOf(node: TreeNode | null | undefined, problems: Problems): ArgumentRuleDoc[] {
  if (node === undefined || node === null) return [];
  const field = 'spec.rules[].mcp.arguments';
  if (node.kind !== 'seq') {
    problems.add(node, `"${field}" must be a list of { path, <conditions> }`);
    return [];
  }
  if (node.items.length > MAX_ARGUMENT_CONDITIONS) problems.add(node, `"${field}" may have at most ${MAX_ARGUMENT_CONDITIONS} entries`);
  const out: ArgumentRuleDoc[] = [];
  for (const item of node.items) {
    if (item?.kind !== 'map') {
      problems.add(item ?? node, `"${field}" entries must be mappings { path, <conditions> }`);
      continue;
    }
    const a = argumentOf(item, fields(item, `${field}[].`, ARGUMENT_FIELDS, problems), `${field}[]`, problems);
    if (a !== undefined) out.push(a);
  }
  return out;
}

function argumentOf(item: TreeMap, f: Map<string, TreeNode | null>, field: string, problems: Problems): ArgumentRuleDoc | undefined {
  const before = problems.list.length;
  const path = str(f.get('path'), `${field}.path`, problems, item);
  if (path !== undefined && !ARGUMENT_PATH.test(path)) problems.add(f.get('path'), `"${field}.path": "${path.slice(0, 100)}" is not an argument path (keys of letters, digits, "_", "-" joined by ".", array indexes as [0]; at most 8 steps)`);
  const scalarOf = (n: TreeNode | null | undefined, name: string): ArgumentScalar | undefined => {
    const v = n?.kind === 'scalar' ? n.value : undefined;
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' || v === null) return v;
    problems.add(n ?? item, `"${field}.${name}" must be a string, number, boolean or null`);
    return undefined;
  };
  const numberOf = (name: string, integer: boolean): number | undefined => {
    const n = f.get(name);
    if (n === undefined) return undefined;
    const v = n?.kind === 'scalar' ? n.value : undefined;
    if (typeof v === 'number' && Number.isFinite(v) && (!integer || (Number.isInteger(v) && v >= 0))) return v;
    problems.add(n ?? item, `"${field}.${name}" must be ${integer ? 'a whole number ≥ 0' : 'a number'}`);
    return undefined;
  };
  const boolOf = (name: string): boolean | undefined => {
    const n = f.get(name);
    if (n === undefined) return undefined;
    const v = n?.kind === 'scalar' ? n.value : undefined;
    if (typeof v === 'boolean') return v;
    problems.add(n ?? item, `"${field}.${name}" must be true or false`);
    return undefined;
  };
  const present = boolOf('present');
  const loggable = boolOf('loggable') ?? false;
  const equals = f.has('equals') ? scalarOf(f.get('equals'), 'equals') : undefined;
  let oneOf: ArgumentScalar[] | undefined;
  const oneOfNode = f.get('oneOf');
  if (oneOfNode !== undefined) {
    if (oneOfNode?.kind !== 'seq' || oneOfNode.items.length === 0) problems.add(oneOfNode ?? item, `"${field}.oneOf" must be a non-empty list of values`);
    else oneOf = oneOfNode.items.map((n) => scalarOf(n, 'oneOf')).filter((v) => v !== undefined);
  }
  const glob = f.has('glob') ? str(f.get('glob'), `${field}.glob`, problems, item) : undefined;
  // Judged as sent, `/data/*` would admit `/data/../etc/passwd`: file paths have their own condition.
  if (glob?.startsWith('/') === true) problems.add(f.get('glob'), `"${field}.glob": "${glob.slice(0, 100)}" looks like a file path: use filePath, which refuses "..", "." and "//" (a glob matches the string as sent)`);
  let filePath: string[] | undefined;
  const fileNode = f.get('filePath');
  if (fileNode !== undefined) {
    const list = fileNode?.kind === 'scalar' ? [fileNode] : fileNode?.kind === 'seq' ? fileNode.items : [];
    if (list.length === 0) problems.add(fileNode ?? item, `"${field}.filePath" must be a path glob or a non-empty list of them`);
    filePath = [];
    for (const n of list) {
      const v = n?.kind === 'scalar' && typeof n.value === 'string' ? n.value : undefined;
      const problem = v === undefined ? 'entries must be strings' : filePathProblem(v.replaceAll('*', 'x'));
      if (problem !== undefined || v === undefined) problems.add(n ?? fileNode, `"${field}.filePath": ${v === undefined ? '' : `"${v.slice(0, 100)}" is not an absolute path in normal form: `}${problem ?? ''}`);
      else filePath.push(v);
    }
  }
  const regex = f.has('regex') ? str(f.get('regex'), `${field}.regex`, problems, item) : undefined;
  if (regex !== undefined) {
    if (regex.length > MAX_ARGUMENT_REGEX_LENGTH) problems.add(f.get('regex'), `"${field}.regex" is longer than ${MAX_ARGUMENT_REGEX_LENGTH} characters`);
    else {
      try {
        RE2JS.compile(regex);
      } catch (err) {
        problems.add(f.get('regex'), `"${field}.regex" is not an RE2 regular expression (no backreferences or lookarounds): ${errorMessage(err).slice(0, 200)}`);
      }
    }
  }
  const min = numberOf('min', false);
  const max = numberOf('max', false);
  const minLength = numberOf('minLength', true);
  const maxLength = numberOf('maxLength', true);
  if (min !== undefined && max !== undefined && min > max) problems.add(f.get('min'), `"${field}.min" is greater than max`);
  if (minLength !== undefined && maxLength !== undefined && minLength > maxLength) problems.add(f.get('minLength'), `"${field}.minLength" is greater than maxLength`);
  const numeric = min !== undefined || max !== undefined;
  const textual = glob !== undefined || filePath !== undefined || regex !== undefined || minLength !== undefined || maxLength !== undefined;
  const conditions = numeric || textual || equals !== undefined || f.has('equals') || oneOf !== undefined;
  if (numeric && textual) problems.add(item, `"${field}" cannot have both number conditions (min, max) and string conditions (glob, filePath, regex, minLength, maxLength)`);
  if (present === false && conditions) problems.add(f.get('present'), `"${field}.present: false" (not sent) cannot be combined with conditions on the value`);
  if (present === undefined && !conditions) problems.add(item, `"${field}" needs a condition: present, equals, oneOf, glob, filePath, regex, min, max, minLength or maxLength`);
  if (problems.list.length > before || path === undefined) return undefined;
  return {
    path,
    loggable,
    ...(present === undefined ? {} : { present }),
    ...(f.has('equals') ? { equals: equals ?? null } : {}),
    ...(oneOf === undefined ? {} : { oneOf }),
    ...(glob === undefined ? {} : { glob }),
    ...(filePath === undefined ? {} : { filePath }),
    ...(regex === undefined ? {} : { regex }),
    ...(min === undefined ? {} : { min }),
    ...(max === undefined ? {} : { max }),
    ...(minLength === undefined ? {} : { minLength }),
    ...(maxLength === undefined ? {} : { maxLength }),
  };
}

// RFC 9110 field names (tokens); matched case-insensitively, so kept in lower case.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]{1,128}$/i;
// Visible ASCII and inner spaces/tabs: what a header value can be once the sidecar has read it.
const HEADER_VALUE = /^[\x21-\x7e]([\x20-\x7e\t]{0,1022}[\x21-\x7e])?$/;
function headersOf(node: TreeNode | null | undefined, problems: Problems): HeaderRuleDoc[] {
  if (node === undefined || node === null) return [];
  const field = 'spec.rules[].headers';
  if (node.kind !== 'seq') {
    problems.add(node, `"${field}" must be a list of { name, values } or { name, present }`);
    return [];
  }
  const out: HeaderRuleDoc[] = [];
  for (const item of node.items) {
    if (item?.kind !== 'map') {
      problems.add(item ?? node, `"${field}" entries must be mappings { name, values: [...] } or { name, present: true|false }`);
      continue;
    }
    const h = fields(item, `${field}[].`, ['name', 'values', 'present'], problems);
    const raw = str(h.get('name'), `${field}[].name`, problems, item);
    let name: string | undefined;
    if (raw !== undefined) {
      const lower = raw.toLowerCase();
      if (!HEADER_NAME.test(raw)) problems.add(h.get('name'), `"${field}[].name": "${raw}" is not an HTTP header name`);
      else if (isUnsentHeader(lower)) problems.add(h.get('name'), `"${field}[].name": "${lower}" is never sent to the control plane (secret, hop-by-hop or judged elsewhere); rules cannot use it`);
      else name = lower;
    }
    const valuesNode = h.get('values');
    const presentNode = h.get('present');
    if ((valuesNode === undefined) === (presentNode === undefined)) {
      problems.add(item, `"${field}[]" needs exactly one of "values" (a list of exact values) or "present" (true or false)`);
      continue;
    }
    if (valuesNode !== undefined) {
      const values = strList(valuesNode, `${field}[].values`, problems, (v) => (HEADER_VALUE.test(v) ? undefined : `"${v.slice(0, 40)}" is not a header value (1..1024 visible ASCII characters, no leading or trailing space)`));
      if (valuesNode?.kind === 'seq' && valuesNode.items.length === 0) problems.add(valuesNode, `"${field}[].values" must list at least one value (for "not sent" write present: false)`);
      if (name !== undefined && values !== undefined && values.length > 0) out.push({ name, values });
      continue;
    }
    const present = presentNode?.kind === 'scalar' ? presentNode.value : undefined;
    if (typeof present !== 'boolean') {
      problems.add(presentNode ?? item, `"${field}[].present" must be true or false`);
      continue;
    }
    if (name !== undefined) out.push({ name, present });
  }
  return out;
}

function pathCheck(p: string): string | undefined {
  const base = p === '/*' ? '/' : p.endsWith('/*') ? p.slice(0, -2) : p;
  if (base.includes('*')) return `"${p}" may use "*" only as a final "/*"`;
  const n = normalizePath(base);
  if (!n.ok) return `"${p}" is not a usable path: ${n.why}`;
  // A request is matched both with and without its `;` parameters: a rule naming them could not hold.
  if (n.plain !== n.path) return `"${p}" is not a usable path: it has ";" parameters (rules match requests with and without theirs)`;
  if (n.path !== base || base.includes('?') || base.includes('#')) return `"${p}" is not in normal form (write it as "${n.path}")`;
  return undefined;
}

export function enumOf<T extends string>(node: TreeNode | null | undefined, field: string, values: readonly T[], problems: Problems, parent: TreeNode, fallback: T | undefined): T | undefined {
  if (node === undefined || node === null) {
    if (fallback === undefined) problems.add(parent, `"${field}" is required (${values.join(' | ')})`);
    return fallback;
  }
  const v = node.kind === 'scalar' ? node.value : undefined;
  if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v as T;
  problems.add(node, `"${field}" must be one of ${values.join(', ')}`);
  return undefined;
}

function checkReferences(segments: readonly SegmentDoc[], policies: readonly PolicyDoc[], problems: Problems, known: ReadonlySet<string>, rateLimits: readonly RateLimitDoc[] = []): void {
  const names = new Set<string>();
  for (const s of segments) {
    if (names.has(s.name)) problems.list.push(`${s.at}: Segment "${s.name}" is defined twice`);
    names.add(s.name);
  }
  const policyNames = new Set<string>();
  for (const p of policies) {
    if (policyNames.has(p.name)) problems.list.push(`${p.at}: Policy "${p.name}" is defined twice`);
    policyNames.add(p.name);
  }
  const limitNames = new Set<string>();
  for (const r of rateLimits) {
    if (limitNames.has(r.name)) problems.list.push(`${r.at}: RateLimit "${r.name}" is defined twice`);
    limitNames.add(r.name);
  }
  for (const r of problems.refs) {
    if (!names.has(r.segment) && !known.has(r.segment)) problems.list.push(`${problems.at(r.node)}: ${r.kind ?? 'Policy'} "${r.policy}" ${r.field} names segment "${r.segment}", which is not defined`);
  }
}

/** Problems reported at most: a hostile bundle can have one per node, and the answer must stay small. */
export const MAX_PROBLEMS = 100;

/** AIRLOCK_POLICY_INVALID listing `problems` (the first MAX_PROBLEMS, then how many more). */
export function policyInvalid(problems: readonly string[]): AirlockError {
  const shown = problems.slice(0, MAX_PROBLEMS).map((p) => `  - ${p}`);
  if (problems.length > MAX_PROBLEMS) shown.push(`  … and ${problems.length - MAX_PROBLEMS} more`);
  return new AirlockError(ErrorCode.Policy, `invalid policy:\n${shown.join('\n')}`);
}

/** A document's text without its `---` marker, so the same document reads the same wherever it stood. */
function ownText(yaml: string): string {
  return yaml.replace(/^---[ \t]*\n/, '');
}

/** The segments a file defines, read within the same limits as the file itself (a file over them defines none here: its own check says why). */
export function definedSegments(text: string, file: string): string[] {
  let docs: Document.Parsed[];
  try {
    docs = parseYamlDocuments(text, file, new LineCounter(), FILE_LIMITS);
  } catch {
    return [];
  }
  return docs
    .flatMap((d) => (Array.isArray(d) ? [] : [d.toJS() as unknown]))
    .filter((j): j is { kind: string; metadata: { name: string } } => {
      const o = j as { kind?: unknown; metadata?: { name?: unknown } } | null;
      return o?.kind === 'Segment' && typeof o.metadata?.name === 'string';
    })
    .map((j) => j.metadata.name);
}
