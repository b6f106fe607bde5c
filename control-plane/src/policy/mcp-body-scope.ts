import type { Labels } from '@airlock/common/labels';
import { meshHostOf, type SpiffeId } from '@airlock/common/spiffe';
import type { PolicyDocuments, SegmentDoc } from './types.ts';

/**
 * Which destinations need a POST application/json body read for MCP (README "How a call flows"):
 * derived once per policy version, pushed to every sidecar, and checked again on each call that a
 * sidecar sent without reading its body. Conservative: a destination it cannot name is covered by
 * a wider flag, never left out.
 */
export interface McpBodyScope {
  readonly version: number;
  /** Every destination (the behaviour baselines learn MCP tools of every call). */
  readonly all: boolean;
  /** Every agent of the mesh (a policy reading MCP to a segment this version does not define). */
  readonly allAgents: boolean;
  /** Agents by SPIFFE ID (segments that list exact `spiffeIds` only). */
  readonly agents: ReadonlySet<string>;
  /** Segments chosen by namespace, service account or labels: their members are found per agent (segmentsOf). */
  readonly segments: ReadonlySet<string>;
  /** External hosts by exact name (lower case), and the mesh hosts of `agents`, for the egress, which knows only the host. */
  readonly hosts: ReadonlySet<string>;
  /** `.example.com` for `*.example.com`. */
  readonly hostSuffixes: readonly string[];
}

/**
 * What a rule reads of the MCP message: its `mcp:` (methods, tools, arguments, onToolChange), and
 * `approve: required`, which holds a `tools/call` only (so it reads the JSON-RPC method).
 */
function readsMcp(rule: PolicyDocuments['policies'][number]['rules'][number]): boolean {
  return rule.mcp !== undefined || rule.approval !== undefined;
}

/** A segment whose members can be named: exact SPIFFE IDs only, nothing chosen by pattern or label. */
function listedMembers(s: SegmentDoc): readonly string[] | undefined {
  return s.namespace === undefined && s.serviceAccounts.length === 0 && Object.keys(s.labels).length === 0 ? s.spiffeIds : undefined;
}

export function mcpBodyScope(docs: PolicyDocuments, version: number, parse: (uri: string) => SpiffeId | undefined): McpBodyScope {
  const segments = new Map(docs.segments.map((s) => [s.name, s]));
  const agents = new Set<string>();
  const hosts = new Set<string>();
  const suffixes = new Set<string>();
  const chosen = new Set<string>();
  let allAgents = false;
  for (const p of docs.policies) {
    // Any mode and action: a dry-run or deny rule on MCP judges the message too.
    if (!p.rules.some(readsMcp)) continue;
    if (p.toSegments !== undefined) {
      for (const name of p.toSegments) {
        const segment = segments.get(name);
        if (segment === undefined) {
          allAgents = true;
          continue;
        }
        const members = listedMembers(segment);
        if (members === undefined) chosen.add(name);
        else for (const id of members) agents.add(id);
      }
      continue;
    }
    for (const h of p.toHosts ?? []) {
      const host = h.toLowerCase();
      if (host.startsWith('*.')) suffixes.add(host.slice(1));
      else hosts.add(host.endsWith('.') ? host.slice(0, -1) : host);
    }
  }
  for (const uri of agents) {
    const id = parse(uri);
    if (id !== undefined) hosts.add(meshHostOf(id).toLowerCase());
  }
  // Baselines learn `tool=NAME` flows of the calls they observe: every body is read while any exists.
  const all = (docs.baselines?.length ?? 0) > 0;
  return { version, all, allAgents, agents, segments: chosen, hosts, hostSuffixes: [...suffixes] };
}

/** Whether a call to `to` needs its MCP body read under `scope` (the control plane's check of a skipped body). */
export function scopeNeeds(
  scope: McpBodyScope,
  to: { readonly kind: 'agent'; readonly id: SpiffeId; readonly labels?: Labels } | { readonly kind: 'host'; readonly host: string },
  segmentsOf: (id: SpiffeId, labels?: Labels) => readonly string[],
): boolean {
  if (scope.all) return true;
  if (to.kind === 'agent') return scope.allAgents || scope.agents.has(to.id.uri) || inChosen(scope, segmentsOf(to.id, to.labels));
  const h = to.host.toLowerCase();
  const host = h.endsWith('.') ? h.slice(0, -1) : h;
  if (scope.hosts.has(host)) return true;
  for (const s of scope.hostSuffixes) if (host.length > s.length && host.endsWith(s)) return true;
  return false;
}

/** Whether any of an agent's segments is one whose bodies are read. */
export function inChosen(scope: McpBodyScope, segments: readonly string[]): boolean {
  if (scope.segments.size === 0) return false;
  for (const s of segments) if (scope.segments.has(s)) return true;
  return false;
}
