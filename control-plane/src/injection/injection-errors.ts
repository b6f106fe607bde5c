import { AirlockError, ErrorCode, isAirlockError } from '@airlock/common/errors';
import { HttpError } from '../api/admin/http-errors.ts';

/**
 * What became of one webhook request: the only values of the `outcome` label of
 * airlock_injection_requests_total, so its cardinality is fixed.
 */
export const OUTCOMES = [
  'injected',
  'already_injected',
  'disabled',
  'host_network',
  'not_a_pod_create',
  'pod_refused',
  'review_invalid',
  'bad_request',
  'internal_error',
] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** Stable reasons an injection request fails, each with the outcome it counts as. */
export const InjectionFailure = {
  /** Not POST /inject, not application/json, not JSON, too large: no AdmissionReview to answer. */
  BadRequest: 'bad_request',
  /** Not an AdmissionReview v1 (without a request uid: answered 400; with one: refused in the review). */
  ReviewInvalid: 'review_invalid',
  /** A readable review of a pod we cannot inject as asked (bad annotation, reserved name …). */
  PodRefused: 'pod_refused',
} as const;
export type InjectionFailure = (typeof InjectionFailure)[keyof typeof InjectionFailure];

export class InjectionError extends AirlockError {
  readonly failure: InjectionFailure;
  /** HTTP status when answered without an AdmissionReview (bad_request, review_invalid). */
  readonly status: number;

  constructor(failure: InjectionFailure, message: string, status = 400) {
    super(ErrorCode.BadRequest, message);
    this.name = 'InjectionError';
    this.failure = failure;
    this.status = status;
  }
}

/** What to send for a failure: a plain HTTP error (no uid to answer) or a refusing AdmissionReview. */
export type FailureAnswer =
  | { readonly kind: 'http'; readonly outcome: Outcome; readonly status: number; readonly body: { error: string; reason: string } }
  | { readonly kind: 'review'; readonly outcome: Outcome; readonly code: number; readonly message: string };

/**
 * The one place webhook errors become answers. Once the review's uid is known every failure is an
 * AdmissionReview with allowed: false (as Istio and Linkerd answer): with a sidecar asked for, a pod
 * must not run without one, and the API server shows our message to whoever created the pod. Before
 * that, there is nothing to answer: HTTP 4xx with a JSON body, which the API server treats as a
 * webhook failure (failurePolicy: Fail refuses the pod too). Internals are never sent.
 */
export function failureAnswer(err: unknown, uid: string | undefined): FailureAnswer {
  if (err instanceof InjectionError) {
    if (uid === undefined || err.failure === InjectionFailure.BadRequest) {
      return { kind: 'http', outcome: err.failure, status: err.status, body: { error: err.failure, reason: err.message } };
    }
    return { kind: 'review', outcome: err.failure, code: 400, message: `airlock sidecar injection: ${err.message}` };
  }
  if (uid === undefined) {
    if (err instanceof HttpError) return { kind: 'http', outcome: 'bad_request', status: err.status, body: { error: err.error, reason: err.message } };
    if (isAirlockError(err) && err.code === ErrorCode.BadRequest) return { kind: 'http', outcome: 'bad_request', status: 400, body: { error: 'bad_request', reason: err.message } };
    return { kind: 'http', outcome: 'internal_error', status: 500, body: { error: 'internal', reason: 'internal error' } };
  }
  return { kind: 'review', outcome: 'internal_error', code: 500, message: 'airlock sidecar injection: internal error (see the control plane log)' };
}
