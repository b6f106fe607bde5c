import { Gauge, type Registry } from 'prom-client';
import { errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import type { Store } from './store.ts';

/** How often the store is asked whether it answers. */
const PING_INTERVAL_MS = 1000;

export interface StoreHealth {
  /** Why this replica is not ready (its state may be stale), or undefined while the store answers. */
  staleReason(): string | undefined;
  stop(): void;
}

/**
 * Asks the store every second whether it answers. A replica cut off from it keeps deciding from the
 * state it holds (its watch resumes where it stopped), but past `staleAfterMs` without an answer it
 * reports itself not ready, so that sidecars and load balancers prefer a replica that is current.
 * The seconds since the last answer are the metric airlock_store_last_contact_age_seconds.
 */
export function watchStoreHealth(store: Store, o: { staleAfterMs: number; registry: Registry; logger: Logger; now?: () => number }): StoreHealth {
  const now = o.now ?? Date.now;
  let lastContact = now();
  let inFlight = false;
  let lastError: string | undefined;
  new Gauge({
    name: 'airlock_store_last_contact_age_seconds',
    help: 'Seconds since the store (SQLite or etcd) last answered this replica; past staleAfter the replica is not ready.',
    registers: [o.registry],
    collect() {
      this.set((now() - lastContact) / 1000);
    },
  });
  const timer = setInterval(() => {
    if (inFlight) return;
    inFlight = true;
    store.ping().then(
      () => {
        if (lastError !== undefined) o.logger.info({ afterMs: now() - lastContact }, 'the store answers again');
        lastContact = now();
        lastError = undefined;
      },
      (err: unknown) => {
        if (lastError === undefined) o.logger.warn({ error: errorMessage(err) }, 'the store does not answer; deciding from the state held');
        lastError = errorMessage(err);
      },
    ).finally(() => {
      inFlight = false;
    });
  }, PING_INTERVAL_MS);
  timer.unref();
  return {
    staleReason() {
      const age = now() - lastContact;
      if (age <= o.staleAfterMs) return undefined;
      return `the store has not answered for ${Math.round(age / 1000)} s (${lastError ?? 'no answer'}): this replica's state may be stale`;
    },
    stop: () => clearInterval(timer),
  };
}
