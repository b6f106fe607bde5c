import { SECRET_DETECTED_REASON, SECRETS_UNSCANNABLE_REASON } from '@airlock/common/reason-class';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { MAX_SECRET_FINDINGS, type SecretFinding } from '@airlock/common/secret-detectors';
import { normalizeHost, type DecisionInput, type PolicyDecision, type PolicyEngine } from '../policy/engine.ts';
import { guardsFor } from '../policy/secrets.ts';
import { overruled } from './contained.ts';

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
 * call to an external host is denied with reason `secret_detected`, naming the detector and the
 * field (never the text: the sidecar sends none), when a detector that found something is blocked
 * by the `secrets:` of any allow policy from the source's segments to that host and port (not only
 * the one that allowed it). A CONNECT such a policy guards that would be a blind tunnel (no
 * `tls: inspect`) is denied: the requests inside could not be scanned.
 */
export function denyIfSecretFound(decision: PolicyDecision, engine: Pick<PolicyEngine, 'secretRules' | 'segmentsOf'>, input: DecisionInput): PolicyDecision {
  const rules = engine.secretRules;
  if (!decision.allow || rules.guards.length === 0 || input.destination.kind !== 'host') return decision;
  const tunnel = input.method === 'CONNECT' && input.path === '' && decision.tls === undefined;
  const findings = input.secretFindings ?? [];
  if (!tunnel && findings.length === 0) return decision;
  const host = input.destination.host;
  const guards = guardsFor(rules, engine.segmentsOf(input.source, input.sourceLabels), normalizeHost(host), input.port);
  const first = guards[0];
  if (first === undefined) return decision;
  if (tunnel) {
    return overruled(decision, `${SECRETS_UNSCANNABLE_REASON}: policy "${first.policy}" blocks secrets to this host, and a CONNECT tunnel is blind to them: add "tls: inspect" to its "to" (or send plain http://)`);
  }
  for (const f of findings) {
    const at = f.detector.indexOf('@');
    const id = at < 0 ? f.detector : f.detector.slice(0, at);
    const guard = guards.find((g) => g.detectors.has(id));
    if (guard !== undefined) return overruled(decision, `${SECRET_DETECTED_REASON}: ${f.detector} in ${f.field}; policy "${guard.policy}" blocks it to ${host}`);
  }
  return decision;
}
