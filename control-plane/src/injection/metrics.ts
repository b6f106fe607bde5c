import { Counter, type Registry } from 'prom-client';
import { OUTCOMES, type Outcome } from './injection-errors.ts';

export interface InjectionMetrics {
  /** Every request to the webhook, by outcome (a fixed list: OUTCOMES), failures included. */
  readonly requests: Counter<'outcome'>;
}

export function createInjectionMetrics(registry: Registry): InjectionMetrics {
  const requests = new Counter({
    name: 'airlock_injection_requests_total',
    help: 'Sidecar injection webhook requests, by outcome (injected, left alone and why, refused, failed).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  // Every outcome shows from the start, at 0: an alert on failures needs the series to exist.
  for (const outcome of OUTCOMES) requests.inc({ outcome } satisfies { outcome: Outcome }, 0);
  return { requests };
}
