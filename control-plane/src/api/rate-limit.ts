import type { Logger } from '@airlock/common/logging';

/** Where a warning goes: a pino Logger, or a LimitedLog in front of one. */
export interface WarnLog {
  warn(fields: Readonly<Record<string, unknown>>, message: string): void;
}

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
 * Warnings a caller can cause at will (refused unauthenticated calls, throttled streams): written
 * at most as fast as the bucket allows, so a flood cannot flood the log. Lines left out are
 * counted and the count goes with the next line written (`suppressed`); metrics still count all.
 */
export class LimitedLog implements WarnLog {
  readonly #logger: Logger;
  readonly #bucket: TokenBucket;
  #suppressed = 0;

  constructor(logger: Logger, bucket: TokenBucket) {
    this.#logger = logger;
    this.#bucket = bucket;
  }

  warn(fields: Readonly<Record<string, unknown>>, message: string): void {
    if (!this.#bucket.take()) {
      this.#suppressed++;
      return;
    }
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    this.#logger.warn(suppressed === 0 ? fields : { ...fields, suppressed }, message);
  }
}

/**
 * The log for refusals any caller can cause (a call without a client certificate, a made-up join
 * token): at most 10 lines a second, bursts of 20. Each server makes one and shares it.
 */
export function refusalLog(logger: Logger): LimitedLog {
  return new LimitedLog(logger, new TokenBucket({ perSecond: 10, burst: 20 }));
}
