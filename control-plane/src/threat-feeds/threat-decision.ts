import { THREAT_FEED_REASON } from '@airlock/common/reason-class';
import type { Destination } from '../policy/engine.ts';
import { overruled } from '../authz/contained.ts';
import type { ThreatIndex, ThreatMatch } from './threat-index.ts';

interface DecisionShape {
  readonly allow: boolean;
  readonly policy: string;
  readonly reason: string;
  readonly dryRunDeny: boolean;
}

/**
 * A call to an external host a threat feed lists (the name or a parent domain, or an address in a
 * listed range) is denied whatever the policies say (nor dry-run), naming the feed, its version and
 * the entry. Mesh destinations are not egress: they are not looked up.
 */
export function denyIfThreat<D extends DecisionShape>(decision: D, destination: Destination, threats: ThreatIndex | undefined): D & { readonly threat?: ThreatMatch } {
  if (threats === undefined || threats.size === 0 || destination.kind !== 'host') return decision;
  const threat = threats.match(destination.host);
  if (threat === undefined) return decision;
  const reason = `${THREAT_FEED_REASON}: ${destination.host} is listed by threat feed "${threat.feed}" (version ${threat.version}, entry "${threat.entry}")`;
  return { ...overruled(decision, reason), threat };
}
