import { overruled } from '../authz/contained.ts';
import type { DecisionInput, PolicyDecision } from '../policy/engine.ts';
import { pinDenial, serverOf, type ToolPinMap } from './tool-pins.ts';

/**
 * The call phase of tool pinning, in the one decision path: an allowed `tools/call` to a tool
 * whose pin is broken (changed, or flagged, and not accepted, under deny or quarantine) is denied
 * whatever the policies say, with reason `tool_changed` or `tool_flagged`. Read from the snapshot.
 */
export function denyIfToolPinBroken<D extends PolicyDecision>(decision: D, pins: ToolPinMap | undefined, input: DecisionInput): D {
  const mcp = input.mcp;
  if (!decision.allow || pins === undefined || pins.size === 0 || mcp === undefined || !('method' in mcp) || mcp.method !== 'tools/call') return decision;
  const why = pinDenial(pins, serverOf(input.destination, input.port), mcp.tool);
  return why === undefined ? decision : overruled(decision, why);
}
