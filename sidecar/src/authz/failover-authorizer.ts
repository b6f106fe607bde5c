import { PerEndpoint, type ControlPlanePool } from '../controlplane/control-plane-pool.ts';
import type { ControlPlaneEndpoints } from '../controlplane/endpoints.ts';
import type { Authorizer, AuthzRequest, Decision } from './authorizer.ts';
import { NoAnswerError } from './proto-mapping.ts';

export interface FailoverAuthorizerOptions {
  readonly endpoints: ControlPlaneEndpoints;
  readonly pool: ControlPlanePool;
  /** The authorizer of one control-plane address (its own stream or channel). */
  readonly authorizerFor: (address: string) => Authorizer;
  /** The decision timeout (authzTimeout): first attempt and retry together. */
  readonly timeoutMs: number;
}

/**
 * With another endpoint to go to, the first attempt gets this share of the decision timeout, so a
 * replica that stays silent (frozen, cut off) leaves time to ask another. A dead one fails at once
 * (connection refused or reset), and the retry then has nearly all of it.
 */
const FIRST_ATTEMPT_SHARE = 0.5;

/**
 * Spreads checks over the healthy control-plane endpoints (ControlPlanePool), each with its own
 * authorizer, and asks a second endpoint once when the first gave no answer, within the same
 * decision timeout. Fail closed: no answer from either is AIRLOCK_AUTHZ_UNAVAILABLE. A check that
 * was answered (allow, deny, or a refusal) is never asked again elsewhere.
 */
export class FailoverAuthorizer implements Authorizer {
  readonly #o: FailoverAuthorizerOptions;
  readonly #byEndpoint: PerEndpoint<Authorizer>;
  #closed = false;

  constructor(o: FailoverAuthorizerOptions) {
    this.#o = o;
    this.#byEndpoint = new PerEndpoint(o.endpoints);
  }

  authorize(request: AuthzRequest, timeoutMs = this.#o.timeoutMs): Promise<Decision> {
    const startedAt = performance.now();
    // A held call's wait goes to the replica holding its approval, once, for the whole wait: no other can answer it.
    if (request.approvalId !== undefined) return this.#attempt(request, request.approvalEndpoint ?? (this.#o.pool.candidates()[0] as string), timeoutMs);
    const [first, second] = this.#o.pool.candidates() as [string, string | undefined];
    const firstTimeout = second === undefined ? timeoutMs : Math.max(1, Math.floor(timeoutMs * FIRST_ATTEMPT_SHARE));
    const attempt = this.#attempt(request, first, firstTimeout);
    if (second === undefined) return attempt;
    return attempt.catch((err: unknown) => {
      const left = Math.floor(timeoutMs - (performance.now() - startedAt));
      if (!(err instanceof NoAnswerError) || left < 1 || this.#closed) throw err;
      this.#o.pool.failedOver('authorize');
      return this.#attempt(request, second, left);
    });
  }

  close(): void {
    this.#closed = true;
    this.#byEndpoint.close();
  }

  #attempt(request: AuthzRequest, address: string, timeoutMs: number): Promise<Decision> {
    const pool = this.#o.pool;
    return this.#byEndpoint
      .get(address, () => this.#o.authorizerFor(address))
      .authorize(request, timeoutMs)
      .then(
        (decision) => {
          pool.answered(address);
          // A held call: its wait must come back here.
          return !decision.allowed && decision.approval !== undefined ? { ...decision, approval: { ...decision.approval, endpoint: address } } : decision;
        },
        (err: unknown) => {
          if (err instanceof NoAnswerError) pool.noAnswer(address);
          throw err;
        },
      );
  }
}
