import type { AuditLog, RefusalRecord } from '../audit/event.ts';

/** Where a refusal is recorded: the audit trail, or a LimitedRefusals in front of it. */
export type RefusalLog = Pick<AuditLog, 'refusal'>;

/** A token bucket: `burst` tokens at most, refilled at `perSecond`; a take that finds too few fails. */
export class TokenBucket {
  readonly #perMs: number;
  readonly #burst: number;
  readonly #now: () => number;
  #tokens: number;
  #at: number;

  constructor(o: { readonly perSecond: number; readonly burst: number; readonly now?: () => number }) {
    this.#perMs = o.perSecond / 1000;
    this.#burst = o.burst;
    this.#now = o.now ?? performance.now.bind(performance);
    this.#tokens = o.burst;
    this.#at = this.#now();
  }

  take(n = 1): boolean {
    const now = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) * this.#perMs);
    this.#at = now;
    if (this.#tokens < n) return false;
    this.#tokens -= n;
    return true;
  }
}

/**
 * Refusals a caller can cause at will (refused unauthenticated calls, throttled streams): recorded
 * at most as fast as the bucket allows, so a flood cannot flood the audit trail. Those left out are
 * counted and the count goes with the next one recorded (`suppressed`); metrics still count all.
 */
export class LimitedRefusals implements RefusalLog {
  readonly #audit: RefusalLog;
  readonly #bucket: TokenBucket;
  #suppressed = 0;

  constructor(audit: RefusalLog, bucket: TokenBucket) {
    this.#audit = audit;
    this.#bucket = bucket;
  }

  refusal(record: RefusalRecord): void {
    if (!this.#bucket.take()) {
      this.#suppressed++;
      return;
    }
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    this.#audit.refusal(suppressed === 0 ? record : { ...record, suppressed });
  }
}

/**
 * The record of refusals any caller can cause (a call without a client certificate, a made-up join
 * token): at most 10 a second, bursts of 20. Each server makes one and shares it.
 */
export function refusalLog(audit: RefusalLog): LimitedRefusals {
  return new LimitedRefusals(audit, new TokenBucket({ perSecond: 10, burst: 20 }));
}
