import type { Histogram } from 'prom-client';
import type { Authorizer, AuthzRequest, Decision } from './authorizer.ts';

/** Records how long each decision took, whatever transport sits behind the authorizer (a held call's wait is not one). */
export function withAuthzMetrics(inner: Authorizer, duration: Histogram<'direction'>): Authorizer {
  // Children bound once: labelled observe() hashes its labels on every call, on the hot path.
  const byDirection = { inbound: duration.labels({ direction: 'inbound' }), outbound: duration.labels({ direction: 'outbound' }) };
  return {
    authorize(request: AuthzRequest, timeoutMs?: number): Promise<Decision> {
      // A held call's wait lasts as long as a human takes: not a decision's latency.
      if (request.approvalId !== undefined) return inner.authorize(request, timeoutMs);
      const startedAt = performance.now();
      const observe = (): void => byDirection[request.direction].observe((performance.now() - startedAt) / 1000);
      const decision = inner.authorize(request, timeoutMs);
      decision.then(observe, observe);
      return decision;
    },
    close: () => inner.close(),
  };
}
