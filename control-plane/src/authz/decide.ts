import type { DecisionInput, PolicyDecision } from '../policy/engine.ts';
import type { DecisionSnapshot } from './decision-state.ts';
import { labelsOf } from './registry.ts';
import { quarantineOf } from '../incident/quarantine-target.ts';
import { QUARANTINED_REASON, REVOKED_REASON } from '@airlock/common/reason-class';
import { denyIfContained, overruled } from './contained.ts';
import { denyIfToolPinBroken } from '../mcp-pins/call-check.ts';
import { denyIfThreat } from '../threat-feeds/threat-decision.ts';
import type { ThreatMatch } from '../threat-feeds/threat-index.ts';
import { denyIfSecretFound } from './secrets.ts';

/** What the sidecar found when it compared the MCP request headers (Mcp-Method, Mcp-Name) with the body. */
interface McpHeaders {
  readonly mcpHeaderMismatch?: string;
}

/**
 * The one decision path of Authorize, AuthorizeStream and explain, on one snapshot: the source's
 * labels read (only when some segment selects by labels; the destination's come with it), the
 * engine's decision, then containment of either party: revoked, or quarantined (until released or
 * its end), itself or by a segment or label selector, egress to a host a threat feed lists, a
 * changed MCP tool, a secret leaving, and MCP headers that contradict the body.
 * Returns the input too: a tools/list filter judges its tools on it.
 */
export function decide(snapshot: DecisionSnapshot, call: DecisionInput & McpHeaders, now = Date.now()): { decision: PolicyDecision & { readonly threat?: ThreatMatch }; input: DecisionInput } {
  const { engine, agents, revoked, threats } = snapshot;
  const input = engine.usesLabels && call.sourceLabels === undefined ? { ...call, sourceLabels: labelsOf(agents, call.source) } : call;
  const destination = input.destination.kind === 'agent' ? input.destination : undefined;
  const parties = { source: input.source, destination: destination?.id };
  const unrevoked = denyIfContained(denyIfThreat(engine.evaluate(input), input.destination, threats, input.destinationAddresses), parties, (id) => revoked.has(id), REVOKED_REASON);
  const quarantined = quarantineOf(snapshot, input.source, now, input.sourceLabels) !== undefined || (destination !== undefined && quarantineOf(snapshot, destination.id, now, destination.labels) !== undefined);
  const contained = quarantined ? overruled(unrevoked, QUARANTINED_REASON) : unrevoked;
  // A tools/call to a pinned MCP tool that changed or was flagged (README "Tool pinning").
  const pinChecked = denyIfToolPinBroken(contained, snapshot.toolPins, input);
  // Secrets or PII a policy's `secrets:` blocks, found in a request to an external host (README "Secret and PII blocking").
  const secretChecked = denyIfSecretFound(pinChecked, engine, input);
  // MCP headers that say another call than the body: denied whatever the policies say (rules judge the body).
  const decision = call.mcpHeaderMismatch === undefined ? secretChecked : overruled(secretChecked, `the MCP request headers do not match its body: ${call.mcpHeaderMismatch.slice(0, 300)}`);
  return { decision, input };
}
