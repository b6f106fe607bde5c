import { SECRET_DETECTORS, type DetectorKind } from '@airlock/common/secret-detectors';
import type { PolicyDoc } from './types.ts';
import type { TreeNode } from './yaml-tree.ts';

/**
 * `spec.to.secrets` of an allow policy to hosts (README "Secret and PII blocking"): the detectors
 * whose findings in an outbound request deny it. `block` names secret detectors, `pii` PII ones;
 * either may be `all`. Unset (the default): nothing is blocked.
 */
export interface SecretsDoc {
  /** Detector ids (`aws-access-key`), `all` expanded; any version of a detector counts. */
  readonly block: readonly string[];
  readonly pii: readonly string[];
}

const IDS: Record<DetectorKind, readonly string[]> = {
  secret: SECRET_DETECTORS.filter((d) => d.kind === 'secret').map((d) => d.id),
  pii: SECRET_DETECTORS.filter((d) => d.kind === 'pii').map((d) => d.id),
};

/**
 * Parses `spec.to.secrets`: `{ block: [ids] | all, pii: [ids] | all }`; `report` collects each
 * problem (with its node, for the line). Only for allow policies to hosts: mesh calls are not
 * scanned for secrets (both ends are agents of the mesh), and a deny policy denies anyway.
 */
export function secretsOf(node: TreeNode | null | undefined, where: { readonly toSegments: boolean; readonly deny: boolean }, report: (node: TreeNode, message: string) => void): SecretsDoc | undefined {
  if (node === undefined) return undefined;
  if (node?.kind !== 'map') {
    if (node !== null) report(node, '"spec.to.secrets" must be a mapping with "block" and/or "pii" (lists of detectors, or all)');
    return undefined;
  }
  if (where.toSegments) report(node, '"spec.to.secrets" is for policies to hosts: calls between agents of the mesh are not scanned for secrets');
  if (where.deny) report(node, '"spec.to.secrets" is for allow policies: it says what an allowed request may not carry');
  let block: readonly string[] = [];
  let pii: readonly string[] = [];
  for (const pair of node.items) {
    const key = pair.key?.kind === 'scalar' ? String(pair.key.value) : undefined;
    if (key === 'block') block = detectors(pair.value ?? node, 'spec.to.secrets.block', IDS.secret, report);
    else if (key === 'pii') pii = detectors(pair.value ?? node, 'spec.to.secrets.pii', IDS.pii, report);
    else report(pair.key ?? node, `unknown field "spec.to.secrets.${key ?? '?'}" (known: block, pii)`);
  }
  if (block.length === 0 && pii.length === 0) report(node, '"spec.to.secrets" blocks nothing: name detectors in "block" and/or "pii", or leave it out');
  return { block, pii };
}

function detectors(node: TreeNode, field: string, known: readonly string[], report: (node: TreeNode, message: string) => void): readonly string[] {
  if (node.kind === 'scalar' && node.value === 'all') return known;
  if (node.kind !== 'seq') {
    report(node, `"${field}" must be a list of detectors or "all" (known: ${known.join(', ')})`);
    return [];
  }
  const out: string[] = [];
  for (const item of node.items) {
    const id = item?.kind === 'scalar' && typeof item.value === 'string' ? item.value : undefined;
    if (id !== undefined && known.includes(id)) {
      if (!out.includes(id)) out.push(id);
    } else report(item ?? node, `"${field}": ${id === undefined ? 'entries must be detector names' : `unknown detector "${id.slice(0, 64)}"`} (known: ${known.join(', ')})`);
  }
  return out;
}

/** An allow policy to hosts with `secrets`: whom it guards, where, and against which detectors. */
export interface SecretGuard {
  readonly policy: string;
  readonly from: ReadonlySet<string>;
  readonly hostsExact: ReadonlySet<string>;
  /** `*.suffix` kept as `.suffix`. */
  readonly hostSuffixes: readonly string[];
  /** Undefined = any port. */
  readonly ports: ReadonlySet<number> | undefined;
  readonly detectors: ReadonlySet<string>;
}

/** The guards of a policy set, in file order; built once per policy set. */
export interface SecretRules {
  readonly guards: readonly SecretGuard[];
}

export function compileSecretRules(policies: readonly PolicyDoc[]): SecretRules {
  const guards: SecretGuard[] = [];
  for (const p of policies) {
    if (p.secrets === undefined || p.action !== 'allow' || p.toHosts === undefined) continue;
    guards.push({
      policy: p.name,
      from: new Set(p.fromSegments),
      hostsExact: new Set(p.toHosts.filter((h) => !h.startsWith('*.'))),
      hostSuffixes: p.toHosts.filter((h) => h.startsWith('*.')).map((h) => h.slice(1)),
      ports: p.toPorts.length === 0 ? undefined : new Set(p.toPorts),
      detectors: new Set([...p.secrets.block, ...p.secrets.pii]),
    });
  }
  return { guards };
}

/**
 * The guards of the policies from one of `segments` to `host` (normalized, as the engine matches
 * it) and `port`, in file order: whichever policy allowed the call, every one that guards its host
 * applies (as `tls:`, a policy's order never lowers it).
 */
export function guardsFor(rules: SecretRules, segments: readonly string[], host: string, port: number): SecretGuard[] {
  return rules.guards.filter(
    (g) => (g.ports === undefined || g.ports.has(port)) && (g.hostsExact.has(host) || g.hostSuffixes.some((s) => host.length > s.length && host.endsWith(s))) && segments.some((s) => g.from.has(s)),
  );
}
