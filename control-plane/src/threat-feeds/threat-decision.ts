import { THREAT_FEED_REASON } from '@airlock/common/reason-class';
import { canonicalAddress, MAX_DESTINATION_ADDRESSES } from '@airlock/common/addresses';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
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
 * the entry. A name is judged on every address the sidecar resolved it to and will dial
 * (`addresses`): a name whose answer lies in a listed range is denied, naming that address too.
 * Mesh destinations are not egress: they are not looked up.
 */
export function denyIfThreat<D extends DecisionShape>(decision: D, destination: Destination, threats: ThreatIndex | undefined, addresses: readonly string[] = []): D & { readonly threat?: ThreatMatch } {
  if (threats === undefined || threats.size === 0 || destination.kind !== 'host') return decision;
  const threat = threats.match(destination.host);
  if (threat !== undefined) return { ...overruled(decision, `${THREAT_FEED_REASON}: ${destination.host} is listed by ${named(threat)}`), threat };
  for (const address of addresses) {
    const hit = threats.match(address);
    if (hit !== undefined) return { ...overruled(decision, `${THREAT_FEED_REASON}: ${destination.host} resolved to ${address}, listed by ${named(hit)}`), threat: hit };
  }
  return decision;
}

function named(threat: ThreatMatch): string {
  return `threat feed "${threat.feed}" (version ${threat.version}, entry "${threat.entry}")`;
}

/**
 * Whether an allowed call to `destination` must first be judged on the addresses its name resolves
 * to (the sidecar resolves and asks again: AuthorizeResponse.addresses_required): an external name
 * (not an IP literal) while some feed lists addresses, asked without addresses.
 */
export function addressesRequired(allowed: boolean, destination: Destination, threats: ThreatIndex | undefined, addresses: readonly string[]): boolean {
  return allowed && addresses.length === 0 && destination.kind === 'host' && threats?.hasAddresses === true && canonicalAddress(destination.host) === undefined;
}

/** The resolved addresses of a request: at most MAX_DESTINATION_ADDRESSES, each an IP address in its canonical text, as the sidecar sends it (a BadRequest otherwise). */
export function checkDestinationAddresses(addresses: readonly string[]): void {
  if (addresses.length > MAX_DESTINATION_ADDRESSES) throw new AirlockError(ErrorCode.BadRequest, `more than ${MAX_DESTINATION_ADDRESSES} destination addresses`);
  for (const a of addresses) {
    if (a.length > 64 || canonicalAddress(a)?.address !== a) throw new AirlockError(ErrorCode.BadRequest, `destination address "${a.slice(0, 64)}" is not an IP address`);
  }
}
