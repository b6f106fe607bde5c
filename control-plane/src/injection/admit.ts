import { isPodCreate, readPod, type AdmissionRequest, type ReviewAnswer } from './admission-review.ts';
import { shouldInject } from './should-inject.ts';
import type { Outcome } from './injection-errors.ts';
import type { InjectionSettings } from './injection-settings.ts';
import { injectionPatch } from './pod-patch.ts';

/**
 * One admission: a pod CREATE gets the sidecar or is left alone (with the reason); anything else
 * (a webhook rule wider than pods/CREATE) passes untouched. Throws InjectionError for a pod it must refuse.
 */
export function admit(request: AdmissionRequest, settings: InjectionSettings, trustBundlePem: string): { outcome: Outcome; answer: ReviewAnswer; reason: string } {
  if (!isPodCreate(request)) {
    const what = `${request.operation} ${[request.kind.group, request.kind.version].filter((s) => s !== '').join('/')} ${request.kind.kind}`;
    return { outcome: 'not_a_pod_create', answer: { allowed: true }, reason: `airlock injects into pods at creation only, not ${what}` };
  }
  const pod = readPod(request.object);
  const decision = shouldInject(pod, settings);
  if (!decision.inject) return { outcome: decision.outcome, answer: { allowed: true }, reason: decision.reason };
  const { patch, warnings } = injectionPatch(pod, settings, decision.options, trustBundlePem);
  return { outcome: 'injected', answer: { allowed: true, patch, warnings: [...decision.warnings, ...warnings] }, reason: 'injected' };
}
