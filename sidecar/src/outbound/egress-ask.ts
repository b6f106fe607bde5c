import { MAX_DESTINATION_ADDRESSES } from '@airlock/common/addresses';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import type { AuthzRequest, Authorizer, Decision } from '../authz/authorizer.ts';
import type { CheckedDestination, DestinationCheck } from './destination-check.ts';

/** A name resolved and checked, or why it cannot be dialled. */
export type Resolution = { readonly checked: CheckedDestination } | { readonly error: unknown };

/**
 * An OUTBOUND ask whose answer, for an external host, comes with the one resolution the call may
 * dial. The question goes first as it is: a call the policies deny never has its name resolved
 * (no DNS query carries a name the agent may not reach). When the control plane answers
 * `addressesRequired` (allowed, but threat feeds list addresses: README "Threat feeds"), the name is
 * resolved and checked (DestinationCheck) and asked about again with the checked addresses; an
 * allowed external call otherwise resolves after the answer. Either way that resolution is the
 * only one: the call dials exactly it (dialable), so DNS cannot answer one thing to the judge and
 * another to the dial.
 */
export async function authorizeEgress(deps: { readonly authorizer: Authorizer; readonly destinations: DestinationCheck }, question: AuthzRequest): Promise<{ decision: Decision; answer?: Resolution; asked: AuthzRequest }> {
  const target = { host: question.host, port: question.port };
  let decision = await deps.authorizer.authorize(question);
  let answer: Resolution | undefined;
  let asked = question;
  if (!decision.allowed && decision.addressesRequired === true) {
    answer = await resolve(deps.destinations, target);
    // A name that cannot be resolved, or resolves to a forbidden address, is refused as such: nothing to judge.
    if ('error' in answer) throw answer.error;
    asked = { ...question, destinationAddresses: answer.checked.addresses };
    decision = await deps.authorizer.authorize(asked);
    if (!decision.allowed && decision.addressesRequired === true) throw new AirlockError(ErrorCode.AuthzUnavailable, 'the control plane asked again for the addresses it was sent');
  }
  // `asked`: the question as decided, for a later ask about the same call (a tools/list filter).
  if (!decision.allowed || decision.upstream !== undefined) return { decision, asked };
  return { decision, answer: answer ?? (await resolve(deps.destinations, target)), asked };
}

/** The name resolved and checked; of a longer answer, the first MAX_DESTINATION_ADDRESSES addresses are judged and dialled. */
function resolve(destinations: DestinationCheck, target: { host: string; port: number }): Promise<Resolution> {
  return destinations.check(target).then(
    (checked) => ({ checked: checked.addresses.length > MAX_DESTINATION_ADDRESSES ? { ...checked, addresses: checked.addresses.slice(0, MAX_DESTINATION_ADDRESSES) } : checked }),
    (error: unknown) => ({ error }),
  );
}

/** The checked answer an allowed external call was judged on, the only one it may dial; or why there is none. */
export function dialable(answer: Resolution | undefined): CheckedDestination {
  if (answer === undefined) throw new AirlockError(ErrorCode.Internal, 'an external call without a checked answer: not dialled');
  if ('error' in answer) throw answer.error;
  return answer.checked;
}
