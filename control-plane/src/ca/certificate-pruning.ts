import { errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import type { Store } from '../store/store.ts';

/** A record is kept this long after its certificate expired (for whoever reads the store after an incident). */
export const CERTIFICATE_RECORD_RETENTION_MS = 24 * 3_600_000;
const PRUNE_EVERY_MS = 3_600_000;

/**
 * Every renewal records a certificate, so the records grow by one per agent per renewal; an expired
 * certificate is of no use to revocation (handshakes refuse it already) nor to a CA rollover. Each
 * replica prunes on its own timer: pruning twice is harmless.
 */
export function startCertificatePruning(o: { store: Store; logger: Logger; now?: () => number; everyMs?: number }): { stop(): void } {
  const now = o.now ?? Date.now;
  let running = false;
  const prune = (): void => {
    if (running) return;
    running = true;
    o.store
      .pruneCertificates(now() - CERTIFICATE_RECORD_RETENTION_MS)
      .then(
        (pruned) => {
          if (pruned > 0) o.logger.info({ pruned }, 'forgot the records of certificates expired for a day');
        },
        (err: unknown) => o.logger.warn({ error: errorMessage(err) }, 'cannot prune certificate records; trying again later'),
      )
      .finally(() => {
        running = false;
      });
  };
  const timer = setInterval(prune, o.everyMs ?? PRUNE_EVERY_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
