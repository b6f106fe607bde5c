import type { DecisionInput, PolicyDecision } from '../policy/engine.ts';
import type { DecisionSnapshot } from './decision-state.ts';
import { labelsOf } from './registry.ts';
import { quarantineOf } from '../incident/quarantine-target.ts';
import { denyIfContained, overruled, QUARANTINED_REASON, REVOKED_REASON } from './contained.ts';
import { denyIfToolPinBroken } from '../mcp-pins/call-check.ts';
import { denyIfThreat } from '../threat-feeds/threat-decision.ts';
import type { ThreatMatch } from '../threat-feeds/threat-index.ts';
import { denyIfSecretFound } from './secrets.ts';

/**
 * The one decision path of Authorize, AuthorizeStream and explain, on one snapshot: the source's
 * labels read (only when some segment selects by labels; the destination's come with it), the
 * engine's decision, then containment of either party: revoked, or quarantined (until released or
 * its end), itself or by a segment or label selector, and egress to a host a threat feed lists.
 * Returns the input too: a tools/list filter judges its tools on it.
 */
export function decide(snapshot: DecisionSnapshot, call: DecisionInput, now = Date.now()): { decision: PolicyDecision & { readonly threat?: ThreatMatch }; input: DecisionInput } {
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
  const decision = denyIfSecretFound(pinChecked, engine, input);
  return { decision, input };
}
