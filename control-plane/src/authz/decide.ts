import type { DecisionInput, PolicyDecision } from '../policy/engine.ts';
import type { DecisionSnapshot } from './decision-state.ts';
import { labelsOf } from './registry.ts';
import { denyIfContained, QUARANTINED_REASON, REVOKED_REASON } from './contained.ts';
import { denyIfToolPinBroken } from '../mcp-pins/call-check.ts';
import { denyIfSecretFound } from './secrets.ts';

/**
 * The one decision path of Authorize, AuthorizeStream and explain, on one snapshot: the source's
 * labels read (only when some segment selects by labels; the destination's come with it), the
 * engine's decision, then containment of either party: revoked, or quarantined (until released or
 * its end). Returns the input too: a tools/list filter judges its tools on it.
 */
export function decide(snapshot: DecisionSnapshot, call: DecisionInput, now = Date.now()): { decision: PolicyDecision; input: DecisionInput } {
  const { engine, agents, revoked, quarantined } = snapshot;
  const input = engine.usesLabels && call.sourceLabels === undefined ? { ...call, sourceLabels: labelsOf(agents, call.source) } : call;
  const destination = input.destination.kind === 'agent' ? input.destination.id : undefined;
  const parties = { source: input.source, destination };
  const inQuarantine = (id: string): boolean => {
    const q = quarantined.get(id);
    return q !== undefined && (q.until === undefined || q.until > now);
  };
  const contained = denyIfContained(denyIfContained(engine.evaluate(input), parties, (id) => revoked.has(id), REVOKED_REASON), parties, inQuarantine, QUARANTINED_REASON);
  // A tools/call to a pinned MCP tool that changed or was flagged (README "Tool pinning").
  const pinChecked = denyIfToolPinBroken(contained, snapshot.toolPins, input);
  // Secrets or PII a policy's `secrets:` blocks, found in a request to an external host (README "Secret and PII blocking").
  const decision = denyIfSecretFound(pinChecked, engine, input);
  return { decision, input };
}
