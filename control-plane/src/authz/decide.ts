import type { DecisionInput, PolicyDecision, PolicyEngine } from '../policy/engine.ts';
import { labelsOf, type AgentLookup } from './registry.ts';
import { denyIfRevoked } from './revoked.ts';

/**
 * The one decision path of Authorize, AuthorizeStream and explain: the source's labels read (only
 * when some segment selects by labels; the destination's come with it), the engine's decision, then
 * revocation of either party. Returns the input too: a tools/list filter judges its tools on it.
 */
export function decide(engine: PolicyEngine, agents: AgentLookup, call: DecisionInput, isRevoked: ((spiffeId: string) => boolean) | undefined): { decision: PolicyDecision; input: DecisionInput } {
  const input = engine.usesLabels && call.sourceLabels === undefined ? { ...call, sourceLabels: labelsOf(agents, call.source) } : call;
  const destination = input.destination.kind === 'agent' ? input.destination.id : undefined;
  return { decision: denyIfRevoked(engine.evaluate(input), { source: input.source, destination }, isRevoked), input };
}
