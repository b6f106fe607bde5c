import type { Histogram } from 'prom-client';
import type { Authorizer, AuthzRequest, Decision } from './authorizer.ts';

/** Records how long each decision took, whatever transport sits behind the authorizer. */
export function withAuthzMetrics(inner: Authorizer, duration: Histogram<'direction'>): Authorizer {
  return {
    async authorize(request: AuthzRequest): Promise<Decision> {
      const end = duration.startTimer({ direction: request.direction });
      try {
        return await inner.authorize(request);
      } finally {
        end();
      }
    },
    close: () => inner.close(),
  };
}
