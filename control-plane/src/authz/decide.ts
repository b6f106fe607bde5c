import type { DecisionInput, PolicyDecision } from '../policy/engine.ts';
import type { DecisionSnapshot } from './decision-state.ts';
import { labelsOf } from './registry.ts';
import { denyIfContained, QUARANTINED_REASON, REVOKED_REASON } from './contained.ts';
import { denyIfThreat } from '../threat-feeds/threat-decision.ts';
import type { ThreatMatch } from '../threat-feeds/threat-index.ts';

/**
 * The one decision path of Authorize, AuthorizeStream and explain, on one snapshot: the source's
 * labels read (only when some segment selects by labels; the destination's come with it), the
 * engine's decision, then containment of either party: revoked, or quarantined (until released or
 * its end), and egress to a host a threat feed lists. Returns the input too: a tools/list filter judges its tools on it.
 */
export function decide(snapshot: DecisionSnapshot, call: DecisionInput, now = Date.now()): { decision: PolicyDecision & { readonly threat?: ThreatMatch }; input: DecisionInput } {
  const { engine, agents, revoked, quarantined, threats } = snapshot;
  const input = engine.usesLabels && call.sourceLabels === undefined ? { ...call, sourceLabels: labelsOf(agents, call.source) } : call;
  const destination = input.destination.kind === 'agent' ? input.destination.id : undefined;
  const parties = { source: input.source, destination };
  const inQuarantine = (id: string): boolean => {
    const q = quarantined.get(id);
    return q !== undefined && (q.until === undefined || q.until > now);
  };
  const decision = denyIfContained(denyIfContained(denyIfThreat(engine.evaluate(input), input.destination, threats), parties, (id) => revoked.has(id), REVOKED_REASON), parties, inQuarantine, QUARANTINED_REASON);
  return { decision, input };
}
