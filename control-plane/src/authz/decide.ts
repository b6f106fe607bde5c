import type { DecisionInput, PolicyDecision } from '../policy/engine.ts';
import type { DecisionSnapshot } from './decision-state.ts';
import { labelsOf } from './registry.ts';
import { denyIfRevoked } from './revoked.ts';

/**
 * The one decision path of Authorize, AuthorizeStream and explain, on one snapshot: the source's
 * labels read (only when some segment selects by labels; the destination's come with it), the
 * engine's decision, then revocation of either party. Returns the input too: a tools/list filter
 * judges its tools on it.
 */
export function decide(snapshot: DecisionSnapshot, call: DecisionInput): { decision: PolicyDecision; input: DecisionInput } {
  const { engine, agents, revoked } = snapshot;
  const input = engine.usesLabels && call.sourceLabels === undefined ? { ...call, sourceLabels: labelsOf(agents, call.source) } : call;
  const destination = input.destination.kind === 'agent' ? input.destination.id : undefined;
  return { decision: denyIfRevoked(engine.evaluate(input), { source: input.source, destination }, (id) => revoked.has(id)), input };
}
