import { DEFAULT_TICKET_TTL_MS, MAX_TICKET_TTL_MS, sealTicket, type TicketClaims } from '@airlock/common/ticket';
import type { TicketKeys } from './ticket-keys.ts';

/** The allowed mesh call a ticket is issued for (what the egress asked, and what was decided): the claims but their times. */
export type TicketedCall = Omit<TicketClaims, 'issuedAt' | 'expiresAt'>;

/**
 * Seals the ticket of an allowed OUTBOUND mesh call under the destination identity's current key:
 * the destination's sidecar admits that one call on it without asking again (common/src/ticket.ts).
 */
export class TicketIssuer {
  readonly #keys: TicketKeys;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(keys: TicketKeys, ttlMs = DEFAULT_TICKET_TTL_MS, now: () => number = Date.now) {
    this.#keys = keys;
    this.#ttlMs = Math.min(ttlMs, MAX_TICKET_TTL_MS);
    this.#now = now;
  }

  /** The ticket, base64url; '' when the call does not fit one (its ingress then asks). */
  issue(call: TicketedCall): string {
    const issuedAt = this.#now();
    return sealTicket({ ...call, issuedAt, expiresAt: issuedAt + this.#ttlMs }, this.#keys.issuing(call.destination)) ?? '';
  }
}
