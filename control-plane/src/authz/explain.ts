import { parseSpiffeId } from '@airlock/common/spiffe';
import { headerInput, type McpInput, type PolicyDecision } from '../policy/engine.ts';
import type { DecisionSnapshot } from './decision-state.ts';
import { decide } from './decide.ts';
import { destinationOfHost } from './registry.ts';

export interface ExplainInput {
  readonly from: string;
  readonly host: string;
  readonly port: number;
  readonly method: string;
  readonly path: string;
  /** The MCP message to explain (`tools/call` of a tool), as the sidecar would read it. */
  readonly mcp?: McpInput;
  /** Request headers (taken as all the headers of the call). */
  readonly headers?: readonly { readonly name: string; readonly value: string }[];
}

export interface Explanation extends PolicyDecision {
  readonly source: string;
  /** The mesh agent the host resolved to, empty for an external host. */
  readonly destination: string;
}

/**
 * What Authorize would decide for an OUTBOUND call, revocation included, without a call being made:
 * the host resolved and the decision made on one snapshot, as Authorize does (one decision path).
 */
export function explain(snapshot: DecisionSnapshot, trustDomain: string, input: ExplainInput): Explanation {
  const source = parseSpiffeId(input.from);
  const { destination } = destinationOfHost(snapshot.agents, trustDomain, input.host, snapshot.engine.usesLabels);
  const call = { source, destination, port: input.port, method: input.method, path: input.path, mcp: input.mcp, headers: headerInput(input.headers ?? [], false) };
  const { decision } = decide(snapshot, call);
  return { ...decision, source: source.uri, destination: destination.kind === 'agent' ? destination.id.uri : '' };
}
