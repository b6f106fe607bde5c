import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { MAX_SECRET_FINDINGS, type SecretFinding } from '@airlock/common/secret-detectors';
import type { DecisionInput, PolicyDecision } from '../policy/engine.ts';
import type { SecretRules } from '../policy/secrets.ts';
import { overruled } from './contained.ts';

export const SECRET_DETECTED_REASON = 'secret_detected';
export const SECRETS_UNSCANNABLE_REASON = 'secrets_unscannable';

const MAX_DETECTOR_LENGTH = 64;
const MAX_FIELD_LENGTH = 256;
const DETECTOR_REF = /^[a-z0-9-]{1,48}@[0-9]{1,6}$/;
const FIELD = /^(?:path|body|header:[!#$%&'*+.^_`|~0-9a-z-]{1,200})$/;

/**
 * The bounds of the findings a sidecar reports (proto AuthorizeRequest.secret_findings): past them
 * the request is refused, not judged on part of them. Their text reaches reasons and audit lines,
 * so it must be the shape the detectors give (`id@version`, `path`, `body`, `header:<token>`).
 */
export function checkSecretFindings(findings: readonly SecretFinding[]): void {
  if (findings.length > MAX_SECRET_FINDINGS) throw new AirlockError(ErrorCode.BadRequest, `more than ${MAX_SECRET_FINDINGS} secret findings`);
  for (const f of findings) {
    if (f.detector.length > MAX_DETECTOR_LENGTH || !DETECTOR_REF.test(f.detector)) throw new AirlockError(ErrorCode.BadRequest, 'a secret finding names its detector as id@version');
    if (f.field.length > MAX_FIELD_LENGTH || !FIELD.test(f.field)) throw new AirlockError(ErrorCode.BadRequest, 'a secret finding\'s field is path, body or header:<lower-case name>');
  }
}

/**
 * Secret and PII blocking, in the one decision path (README "Secret and PII blocking"): an allowed
 * call to an external host, allowed by a policy whose `secrets:` blocks a detector that found
 * something in the request, is denied with reason `secret_detected`, naming the detector and the
 * field (never the text: the sidecar sends none). A CONNECT such a policy would open as a blind
 * tunnel (no `tls: inspect`) is denied: the requests inside could not be scanned.
 */
export function denyIfSecretFound(decision: PolicyDecision, rules: SecretRules, input: DecisionInput): PolicyDecision {
  if (!decision.allow || rules.size === 0 || input.destination.kind !== 'host') return decision;
  const blocked = rules.get(decision.policy);
  if (blocked === undefined) return decision;
  if (input.method === 'CONNECT' && input.path === '' && decision.tls === undefined) {
    return overruled(decision, `${SECRETS_UNSCANNABLE_REASON}: policy "${decision.policy}" blocks secrets to this host, and a CONNECT tunnel is blind to them: add "tls: inspect" to its "to" (or send plain http://)`);
  }
  for (const f of input.secretFindings ?? []) {
    const at = f.detector.indexOf('@');
    if (blocked.has(at < 0 ? f.detector : f.detector.slice(0, at))) {
      return overruled(decision, `${SECRET_DETECTED_REASON}: ${f.detector} in ${f.field}; policy "${decision.policy}" blocks it to ${input.destination.host}`);
    }
  }
  return decision;
}
