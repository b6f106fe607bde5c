import { canonicalAddress } from '@airlock/common/addresses';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import type { AuthzRequest, Authorizer, Decision } from '../authz/authorizer.ts';
import type { CheckedDestination, DestinationCheck } from './destination-check.ts';

/** A name resolved and checked, or why it cannot be dialled: kept until the decision says whether it is needed. */
export type Resolution = { readonly checked: CheckedDestination } | { readonly error: unknown };

/**
 * An OUTBOUND ask whose answer, for an external host, comes with the very addresses it was judged
 * on: the name is resolved and checked (DestinationCheck) BEFORE asking, the checked addresses go
 * in the request (threat feeds judge them, README "Threat feeds"), and those are the only ones the
 * call may dial: no second resolution, so DNS cannot answer one thing to the judge and another to
 * the dial. Whether the host is a mesh host only the decision says, so a name is resolved first
 * unless a decision already said it is a mesh host; a failed or forbidden answer is asked without
 * addresses, and thrown (dialable) only when an allowed external call is dialled (a mesh name need not resolve). A
 * name remembered as mesh that a decision now says is external is resolved and asked again.
 */
export async function authorizeEgress(deps: { readonly authorizer: Authorizer; readonly destinations: DestinationCheck }, question: AuthzRequest): Promise<{ decision: Decision; answer?: Resolution }> {
  const target = { host: question.host, port: question.port };
  const destinations = deps.destinations;
  let resolution = destinations.isMeshName(target.host) ? undefined : await resolve(destinations, target);
  let decision = await deps.authorizer.authorize(asked(question, resolution));
  if (decision.allowed && resolution === undefined && decision.upstream === undefined) {
    resolution = await resolve(destinations, target);
    decision = await deps.authorizer.authorize(asked(question, resolution));
  }
  if (!decision.allowed) return { decision };
  destinations.noteMesh(target.host, decision.upstream !== undefined);
  if (decision.upstream !== undefined) return { decision };
  return resolution === undefined ? { decision } : { decision, answer: resolution };
}

/** The checked answer an allowed external call was judged on, the only one it may dial; or why there is none. */
export function dialable(answer: Resolution | undefined): CheckedDestination {
  if (answer === undefined) throw new AirlockError(ErrorCode.Internal, 'an external call without a judged answer: not dialled');
  if ('error' in answer) throw answer.error;
  return answer.checked;
}

function resolve(destinations: DestinationCheck, target: { host: string; port: number }): Promise<Resolution> {
  return destinations.check(target).then(
    (checked) => ({ checked }),
    (error: unknown) => ({ error }),
  );
}

/** The question with the checked answer of a name (an IP literal is judged as itself: nothing to add). */
function asked(question: AuthzRequest, resolution: Resolution | undefined): AuthzRequest {
  if (resolution === undefined || !('checked' in resolution) || canonicalAddress(question.host) !== undefined) return question;
  return { ...question, destinationAddresses: resolution.checked.addresses };
}
