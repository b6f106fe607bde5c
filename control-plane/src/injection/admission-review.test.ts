import { describe, expect, it } from 'vitest';
import { readRequest, readReview, reviewResponse } from './admission-review.ts';
import { failureAnswer, InjectionError, InjectionFailure } from './injection-errors.ts';

const review = (request: unknown): unknown => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request });

describe('reading an AdmissionReview', () => {
  it.each([
    ['a JSON array', [], /the body is not a JSON object/],
    ['null', null, /the body is not a JSON object/],
    ['v1beta1', { apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: { uid: 'u' } }, /apiVersion is "admission.k8s.io\/v1beta1"/],
    ['another kind', { apiVersion: 'admission.k8s.io/v1', kind: 'Pod', request: { uid: 'u' } }, /kind is "Pod"/],
    ['no request', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, /it has no request/],
    ['no uid', review({}), /request.uid is missing/],
    ['a numeric uid', review({ uid: 7 }), /request.uid is missing/],
    ['a uid with a newline', review({ uid: 'a\nb' }), /request.uid/],
    ['a uid of 129 characters', review({ uid: 'u'.repeat(129) }), /request.uid/],
  ])('answers %s with HTTP 400 (no uid to answer with)', (_name, body, message) => {
    let caught: unknown;
    try {
      readReview(body);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InjectionError);
    expect((caught as Error).message).toMatch(message);
    expect(failureAnswer(caught, undefined)).toMatchObject({ kind: 'http', status: 400, outcome: 'review_invalid', body: { error: 'review_invalid' } });
  });

  it('refuses a review with a uid but a malformed request inside the review (allowed: false), echoing the uid', () => {
    const { uid, request } = readReview(review({ uid: 'u-9', kind: 'Pod', operation: 'CREATE' }));
    let caught: unknown;
    try {
      readRequest(uid, request);
    } catch (err) {
      caught = err;
    }
    const answer = failureAnswer(caught, uid);
    expect(answer).toEqual({ kind: 'review', outcome: 'review_invalid', code: 400, message: 'airlock sidecar injection: malformed AdmissionReview: request.kind must be {group, version, kind}' });
  });

  it('never sends an internal error message, with or without a uid', () => {
    const secret = new Error('EACCES /var/lib/airlock/ca.key');
    expect(JSON.stringify(failureAnswer(secret, undefined))).not.toContain('ca.key');
    expect(failureAnswer(secret, 'u')).toMatchObject({ kind: 'review', outcome: 'internal_error', code: 500 });
    expect(JSON.stringify(failureAnswer(secret, 'u'))).not.toContain('ca.key');
    expect(failureAnswer(new InjectionError(InjectionFailure.BadRequest, 'x', 415), 'u')).toMatchObject({ kind: 'http', status: 415 });
  });

  it('answers with the same uid and the patch in base64', () => {
    const out = reviewResponse('u-1', { allowed: true, patch: [{ op: 'add', path: '/a', value: 1 }], warnings: ['w'] });
    expect(out).toEqual({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: 'u-1', allowed: true, patchType: 'JSONPatch', patch: Buffer.from('[{"op":"add","path":"/a","value":1}]').toString('base64'), warnings: ['w'] },
    });
    expect(reviewResponse('u-2', { allowed: true })).toEqual({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'u-2', allowed: true } });
  });
});
