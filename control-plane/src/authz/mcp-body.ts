import { askAgain } from './ask-again.ts';
import { meshHostOf, parseSpiffeId, type SpiffeId } from '@airlock/common/spiffe';
import type { AuthorizeResponse } from '@airlock/proto/authorization/v1';
import type { McpBodyScope as McpBodyScopeMessage } from '@airlock/proto/identity/v1';
import type { ControlPlaneMetrics } from '../monitoring/metrics.ts';
import type { Destination } from '../policy/engine.ts';
import { inChosen, scopeNeeds } from '../policy/mcp-body-scope.ts';
import type { DecisionSnapshot, DecisionState } from './decision-state.ts';

/**
 * Whether a call to `destination` needs its MCP body, on this snapshot: the policy's scope
 * (policy/mcp-body-scope.ts), or a pinned MCP server, whose tools/call the pin check judges.
 * A sidecar that skipped the body of such a call is told to read it and ask again.
 */
export function needsMcpBody(snapshot: DecisionSnapshot, destination: Destination, port: number): boolean {
  const engine = snapshot.engine;
  if (scopeNeeds(engine.mcpBody, destination, (id, labels) => engine.segmentsOf(id, labels))) return true;
  const pins = snapshot.toolPins;
  if (pins === undefined || pins.size === 0) return false;
  return pins.has(destination.kind === 'agent' ? destination.id.uri : `${destination.host}:${port}`);
}

export const MCP_BODY_REQUIRED_REASON = 'the MCP body of this call must be read (a policy reads MCP for its destination): read it and ask again';

/**
 * The answer to a skipped body that the current snapshot needs: not a decision (none is audited;
 * the second ask is), a DENY to any sidecar that does not know mcp_body_required.
 */
export function mcpBodyRequired(metrics: ControlPlaneMetrics, decisionId: string, version: number): AuthorizeResponse {
  metrics.refused.inc({ reason: 'mcp_body_required' });
  return askAgain(decisionId, version, MCP_BODY_REQUIRED_REASON, { mcpBodyRequired: true });
}

/**
 * The scope as pushed: the policy's, the registered members of its segments chosen by pattern or
 * label (an agent registered since is caught by the control plane's check until the next push),
 * and the pinned servers (a pinned host counts on every port).
 */
function toMessage(snapshot: DecisionSnapshot): McpBodyScopeMessage {
  const engine = snapshot.engine;
  const scope = engine.mcpBody;
  const ids = new Set(scope.agents);
  const hosts = new Set(scope.hosts);
  if (scope.segments.size > 0) {
    for (const agent of snapshot.agents.values()) {
      const id = parsed(agent.spiffeId);
      if (id !== undefined && inChosen(scope, engine.segmentsOf(id, agent.labels ?? {}))) {
        ids.add(id.uri);
        hosts.add(meshHostOf(id).toLowerCase());
      }
    }
  }
  for (const server of snapshot.toolPins?.keys() ?? []) addPinned(server, ids, hosts);
  return { policyVersion: scope.version, all: scope.all, allAgents: scope.allAgents, spiffeIds: [...ids], hosts: [...hosts], hostSuffixes: [...scope.hostSuffixes] };
}

function parsed(uri: string): SpiffeId | undefined {
  try {
    return parseSpiffeId(uri);
  } catch {
    return undefined;
  }
}

/** A pinned server (a SPIFFE ID, or `host:port`; tool-pins.ts serverOf) as a destination to read bodies of. */
function addPinned(server: string, ids: Set<string>, hosts: Set<string>): void {
  if (server.startsWith('spiffe://')) {
    ids.add(server);
    try {
      hosts.add(meshHostOf(parseSpiffeId(server)).toLowerCase());
    } catch {
      // not an agent's ID: its ingress reads by ID (none here), the control plane asks for the body
    }
    return;
  }
  const colon = server.lastIndexOf(':');
  hosts.add((colon < 0 ? server : server.slice(0, colon)).toLowerCase());
}

/**
 * The scope pushed to every sidecar on its WatchTrustBundle stream: made once per policy version
 * or tool-pin change (not per sidecar, not per call), and again on each such change.
 */
export class McpBodyScopes {
  #message: McpBodyScopeMessage;
  readonly #listeners = new Set<() => void>();

  constructor(decisions: DecisionState) {
    this.#message = toMessage(decisions.current());
    decisions.onReplace((part) => {
      if (part.engine === undefined && part.toolPins === undefined && part.agents === undefined) return;
      const next = toMessage(decisions.current());
      if (sameScope(next, this.#message)) return;
      this.#message = next;
      for (const l of this.#listeners) l();
    });
  }

  current(): McpBodyScopeMessage {
    return this.#message;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

function sameScope(a: McpBodyScopeMessage, b: McpBodyScopeMessage): boolean {
  const same = (x: readonly string[], y: readonly string[]): boolean => x.length === y.length && x.every((v, i) => v === y[i]);
  return a.policyVersion === b.policyVersion && a.all === b.all && a.allAgents === b.allAgents && same(a.spiffeIds, b.spiffeIds) && same(a.hosts, b.hosts) && same(a.hostSuffixes, b.hostSuffixes);
}
