import { argumentsDigest, MAX_TICKET_TTL_MS, openTicket, ticketMacValid, TICKET_HEADER, type TicketClaims } from '@airlock/common/ticket';
import type { McpMessage } from '../authz/authorizer.ts';
import type { TicketTrust } from '../identity/trust-bundle-watcher.ts';
import { ReplayCache } from './replay-cache.ts';

/** Why a call was not admitted on a ticket (a bounded label set): it then asks the control plane. */
export type TicketFallback =
  | 'absent'
  | 'malformed'
  | 'unknown_key'
  | 'bad_mac'
  | 'wrong_source'
  | 'wrong_destination'
  | 'wrong_instance'
  | 'mismatch'
  | 'expired'
  | 'replayed'
  | 'contained'
  | 'replay_cache_full';

/** The call as the ingress received it: what a ticket must name exactly. */
export interface ReceivedCall {
  /** The peer's SPIFFE ID from the verified handshake. */
  readonly peer: string;
  /** Our own SPIFFE ID and the inbound address we registered (the upstream a decision names). */
  readonly self: string;
  readonly instance: string;
  readonly host: string;
  readonly port: number;
  readonly method: string;
  readonly path: string;
  readonly mcp: McpMessage | undefined;
}

export type TicketVerdict = { readonly admitted: true; readonly claims: TicketClaims } | { readonly admitted: false; readonly reason: TicketFallback; readonly claims?: TicketClaims; readonly keyId?: number };

/** The ticket header of a request (from rawHeaders, every occurrence): undefined if none, '' if more than one (never admitted). */
export function ticketHeader(rawHeaders: readonly string[]): string | undefined {
  let found: string | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] ?? '';
    if (name.length !== TICKET_HEADER.length || name.toLowerCase() !== TICKET_HEADER) continue;
    if (found !== undefined) return '';
    found = rawHeaders[i + 1] ?? '';
  }
  return found;
}

/** `mcp` undefined on a POST: this ingress skipped the body (mcp/mcp-body-scope.ts); only a ticket for a skipped body (no MCP method) matches it. */
function mcpMatches(claims: TicketClaims, mcp: McpMessage | undefined): boolean {
  if (mcp === undefined) return claims.mcpMethod === '' && claims.mcpArgumentsDigest === '';
  if ('unreadable' in mcp) return false;
  if (mcp.method !== claims.mcpMethod || (mcp.method === 'tools/call' && mcp.tool !== claims.mcpTool)) return false;
  // Arguments a rule judged: the very arguments this body carries, as both sidecars read them.
  if (claims.mcpArgumentsDigest === '') return true;
  const args = mcp.arguments !== undefined && 'json' in mcp.arguments ? mcp.arguments.json : undefined;
  return args !== undefined && argumentsDigest(args) === claims.mcpArgumentsDigest;
}

/**
 * Decides whether a call may be admitted on its ticket alone: only when every check holds (README
 * "How a call flows"). Anything else is a fallback: the call is decided by the control plane as if
 * it had come without a ticket. Checked in order of cost; the decision id is recorded last, so only
 * a ticket that passed everything else can use up its single admission.
 */
export class TicketCheck {
  readonly #trust: TicketTrust;
  readonly #replays: ReplayCache;
  readonly #now: () => number;

  constructor(trust: TicketTrust, o: { readonly replays?: ReplayCache; readonly now?: () => number } = {}) {
    this.#trust = trust;
    this.#replays = o.replays ?? new ReplayCache();
    this.#now = o.now ?? Date.now;
  }

  check(header: string | undefined, call: ReceivedCall): TicketVerdict {
    if (header === undefined) return { admitted: false, reason: 'absent' };
    const ticket = openTicket(header);
    if (ticket === undefined) return { admitted: false, reason: 'malformed' };
    const { claims, keyId } = ticket;
    const refuse = (reason: TicketFallback): TicketVerdict => ({ admitted: false, reason, claims, keyId });
    // Claims are reported (and logged) only once the MAC vouches for them.
    const key = this.#trust.ticketKey(keyId);
    if (key === undefined) return { admitted: false, reason: 'unknown_key', keyId };
    if (!ticketMacValid(ticket, key)) return { admitted: false, reason: 'bad_mac', keyId };
    if (claims.source !== call.peer) return refuse('wrong_source');
    if (claims.destination !== call.self) return refuse('wrong_destination');
    if (claims.instance !== call.instance) return refuse('wrong_instance');
    if (claims.host !== call.host || claims.port !== call.port || claims.method !== call.method || claims.path !== call.path || !mcpMatches(claims, call.mcp)) return refuse('mismatch');
    const now = this.#now();
    // A clock ahead of ours cannot stretch a ticket past the longest lifetime one may have.
    if (now >= claims.expiresAt || claims.expiresAt - now > MAX_TICKET_TTL_MS || claims.expiresAt - claims.issuedAt > MAX_TICKET_TTL_MS) return refuse('expired');
    if (this.#trust.isContained(claims.source)) return refuse('contained');
    const seen = this.#replays.admit(claims.decisionId, claims.expiresAt, now);
    if (seen === 'replayed') return refuse('replayed');
    if (seen === 'full') return refuse('replay_cache_full');
    return { admitted: true, claims };
  }
}
