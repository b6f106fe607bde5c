/**
 * Agent labels, as Kubernetes writes them: keys `[prefix/]name` (prefix a DNS subdomain of at most
 * 253 characters, name at most 63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric),
 * values empty or like a name. Labels come from attestation (join tokens, Kubernetes) and are
 * matched by Segment selectors.
 */
export type Labels = Readonly<Record<string, string>>;

/** At most this many labels per agent (a join token's labels and attestation's together). */
export const MAX_LABELS = 32;

const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
/** A lowercase DNS subdomain (RFC 1123), as Kubernetes names and label prefixes are. */
export const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why `key` is not a label key, or undefined when it is one. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash === -1 ? undefined : key.slice(0, slash);
  const name = slash === -1 ? key : key.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return `label key "${key}": the prefix must be a lowercase DNS subdomain`;
  if (!NAME.test(name)) return `label key "${key}": the name must be 1-63 letters, digits, "-", "_", ".", starting and ending with a letter or digit`;
  return undefined;
}

/** Why `value` is not a label value, or undefined when it is one. */
export function labelValueProblem(value: string): string | undefined {
  if (value === '' || NAME.test(value)) return undefined;
  return `label value "${value}" must be empty or 1-63 letters, digits, "-", "_", ".", starting and ending with a letter or digit`;
}

/** Checks a whole label set; throws an Error naming the first problem. */
export function checkLabels(labels: Labels): void {
  const keys = Object.keys(labels);
  if (keys.length > MAX_LABELS) throw new Error(`at most ${MAX_LABELS} labels`);
  for (const k of keys) {
    const problem = labelKeyProblem(k) ?? labelValueProblem(labels[k] ?? '');
    if (problem !== undefined) throw new Error(problem);
  }
}

/** `KEY=VALUE` as one label (the CLI's `--label`); throws an Error when malformed. */
export function parseLabel(text: string): [string, string] {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new Error(`a label is KEY=VALUE (got "${text}")`);
  const key = text.slice(0, eq);
  const value = text.slice(eq + 1);
  const problem = labelKeyProblem(key) ?? labelValueProblem(value);
  if (problem !== undefined) throw new Error(problem);
  return [key, value];
}

/** Labels set by Kubernetes attestation: an admin's join-token labels cannot use these keys. */
export const KUBERNETES_LABEL_PREFIX = 'kubernetes.io/';
