/**
 * Egress secret and PII detectors (README "Secret and PII blocking"): named and versioned, run by
 * the sidecar over an outbound request's path, headers and a bounded body prefix; only the findings
 * (detector `id@version` and the field) go to the control plane, never the matched text. A change
 * to what a detector matches bumps its version.
 *
 * Each detector first looks for a fixed string its tokens must hold (`includes`, a fast scan), and
 * runs its pattern only when it is there. Every pattern is linear in the text scanned: each starts after a character that cannot be part
 * of the token (a lookbehind), so a run of token characters is entered at most once, and every
 * repetition is bounded. Texts are scanned as latin1 (one char per byte: tokens are ASCII).
 */

export type DetectorKind = 'secret' | 'pii';

export interface SecretDetector {
  readonly id: string;
  readonly version: number;
  readonly kind: DetectorKind;
  /** Documentation: what it matches. */
  readonly looksFor: string;
  /** True when `text` holds a match (the match itself is never returned). */
  matches(text: string): boolean;
}

/** Where a finding was: `path` (request target with query), `body` (its scanned prefix), or `header:<lower-case name>`. */
export type FindingField = string;

export interface SecretFinding {
  /** `id@version`. */
  readonly detector: string;
  readonly field: FindingField;
}

/** How much of a request body the sidecar scans. */
export const SECRET_SCAN_BODY_BYTES = 16 * 1024;
/** At most this many findings per request (one per detector and field). */
export const MAX_SECRET_FINDINGS = 32;

/** Every match of `re` (global, sticky-free) passing `check`. */
function anyMatch(re: RegExp, text: string, check: (m: string) => boolean): boolean {
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (check(m[0])) return true;
  }
  return false;
}

const PEM_PRIVATE_KEY = /-----BEGIN (?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?-----/;
const AWS_ACCESS_KEY = /(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])/;
const GITHUB_TOKEN = /(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})(?![A-Za-z0-9_])/;
const SLACK_TOKEN = /(?<![A-Za-z0-9-])xox[abposr]-[0-9]{6,20}-[A-Za-z0-9-]{10}/;
const GOOGLE_API_KEY = /(?<![A-Za-z0-9_-])AIza[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])/;
const OPENAI_API_KEY = /(?<![A-Za-z0-9_-])sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32}/;
const ANTHROPIC_API_KEY = /(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{32}/;
const STRIPE_SECRET_KEY = /(?<![A-Za-z0-9_])[sr]k_live_[A-Za-z0-9]{24}/;
// Header, payload (signature may be empty: alg none); the header is checked to be JSON with "alg".
const JWT = /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,2048}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*/g;
const EMAIL = /(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}(?![A-Za-z0-9-])/;
// 13 to 19 digits, single spaces or dashes between them allowed; checked for an issuer prefix and Luhn.
const CARD = /(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])/g;
const US_SSN = /(?<![0-9-])(?!000|666|9)[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![0-9-])/;

function jwtHeaderOk(token: string): boolean {
  const header = token.slice(0, token.indexOf('.'));
  try {
    const value: unknown = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && typeof (value as Record<string, unknown>).alg === 'string';
  } catch {
    return false;
  }
}

/** Prefixes of the major card networks (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay): a 13–19 digit number without one (a timestamp, an id) is not a card. */
const CARD_PREFIX = /^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6(?:011|5|4[4-9]|2))/;

export function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

function cardOk(m: string): boolean {
  const digits = m.replace(/[ -]/g, '');
  return CARD_PREFIX.test(digits) && luhnValid(digits);
}

/** Every detector, in the order findings are reported. */
export const SECRET_DETECTORS: readonly SecretDetector[] = [
  { id: 'private-key', version: 1, kind: 'secret', looksFor: 'a PEM private key header: -----BEGIN [RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP …] PRIVATE KEY-----', matches: (t) => t.includes('PRIVATE KEY') && PEM_PRIVATE_KEY.test(t) },
  { id: 'aws-access-key', version: 1, kind: 'secret', looksFor: 'an AWS access key id: AKIA, ASIA, ABIA or ACCA and 16 upper-case letters or digits', matches: (t) => (t.includes('AKIA') || t.includes('ASIA') || t.includes('ABIA') || t.includes('ACCA')) && AWS_ACCESS_KEY.test(t) },
  { id: 'github-token', version: 1, kind: 'secret', looksFor: 'a GitHub token: ghp_/gho_/ghu_/ghs_/ghr_ and 36 letters or digits, or github_pat_ (fine-grained)', matches: (t) => (t.includes('_') && (t.includes('gh') || t.includes('github_pat_'))) && GITHUB_TOKEN.test(t) },
  { id: 'slack-token', version: 1, kind: 'secret', looksFor: 'a Slack token: xoxb-, xoxp-, xoxa-, xoxo-, xoxs-, xoxr- and digits', matches: (t) => t.includes('xox') && SLACK_TOKEN.test(t) },
  { id: 'google-api-key', version: 1, kind: 'secret', looksFor: 'a Google API key: AIza and 35 characters', matches: (t) => t.includes('AIza') && GOOGLE_API_KEY.test(t) },
  { id: 'openai-api-key', version: 1, kind: 'secret', looksFor: 'an OpenAI API key: sk-, sk-proj-, sk-svcacct- or sk-admin- and at least 32 characters', matches: (t) => t.includes('sk-') && OPENAI_API_KEY.test(t) },
  { id: 'anthropic-api-key', version: 1, kind: 'secret', looksFor: 'an Anthropic API key: sk-ant- and at least 32 characters', matches: (t) => t.includes('sk-ant-') && ANTHROPIC_API_KEY.test(t) },
  { id: 'stripe-secret-key', version: 1, kind: 'secret', looksFor: 'a Stripe live secret or restricted key: sk_live_ or rk_live_ and at least 24 letters or digits', matches: (t) => t.includes('k_live_') && STRIPE_SECRET_KEY.test(t) },
  { id: 'jwt', version: 1, kind: 'secret', looksFor: 'a JSON Web Token: three base64url parts, the first a JSON header with "alg"', matches: (t) => t.includes('eyJ') && anyMatch(JWT, t, jwtHeaderOk) },
  { id: 'email', version: 1, kind: 'pii', looksFor: 'an e-mail address: local@domain.tld', matches: (t) => t.includes('@') && EMAIL.test(t) },
  { id: 'credit-card', version: 1, kind: 'pii', looksFor: 'a payment card number: 13–19 digits (single spaces or dashes between), a major network prefix, valid Luhn check digit', matches: (t) => anyMatch(CARD, t, cardOk) },
  { id: 'us-ssn', version: 1, kind: 'pii', looksFor: 'a US social security number written NNN-NN-NNNN (not 000, 666 or 9xx; not 00 nor 0000 groups)', matches: (t) => t.includes('-') && US_SSN.test(t) },
];

export const SECRET_DETECTOR_IDS: ReadonlySet<string> = new Set(SECRET_DETECTORS.map((d) => d.id));

/** `id@version` of a detector. */
export function detectorRef(d: SecretDetector): string {
  return `${d.id}@${d.version}`;
}

const REFS = SECRET_DETECTORS.map(detectorRef);

/** The detector an `id@version` names (this version only), or undefined. */
export function detectorOf(ref: string): SecretDetector | undefined {
  return SECRET_DETECTORS.find((d) => detectorRef(d) === ref);
}

/** What the sidecar scans of one request: texts as latin1 strings. */
export interface ScannedRequest {
  /** Request target (path and query). */
  readonly path: string;
  /** Names and values, as Node's rawHeaders: every occurrence. */
  readonly rawHeaders: readonly string[];
  /** The body prefix read (at most SECRET_SCAN_BODY_BYTES are scanned); undefined = no body. */
  readonly body: Buffer | undefined;
}

/**
 * The findings in a request: per detector and field at most one, at most MAX_SECRET_FINDINGS, in
 * the order path, headers (as sent), body. Header names are lower-cased.
 */
export function scanRequest(req: ScannedRequest): SecretFinding[] {
  const findings: SecretFinding[] = [];
  const seen = new Set<string>();
  const scan = (field: string, text: string): void => {
    if (text.length < 6) return; // shorter than any detector's match
    for (let i = 0; i < SECRET_DETECTORS.length; i++) {
      if (findings.length >= MAX_SECRET_FINDINGS) return;
      if (!(SECRET_DETECTORS[i] as SecretDetector).matches(text)) continue;
      const detector = REFS[i] as string;
      const key = `${detector}\0${field}`;
      if (seen.has(key)) continue;
      seen.add(key);
      findings.push({ detector, field });
    }
  };
  scan('path', req.path);
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) scan(`header:${(req.rawHeaders[i] ?? '').toLowerCase()}`, req.rawHeaders[i + 1] ?? '');
  const body = req.body;
  if (body !== undefined && body.length > 0) scan('body', body.toString('latin1', 0, Math.min(body.length, SECRET_SCAN_BODY_BYTES)));
  return findings;
}
