import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { parseLabel, type Labels } from '@airlock/common/labels';
import { parseSpiffeId, type SpiffeId } from '@airlock/common/spiffe';
import type { DecisionSnapshot } from '../authz/decision-state.ts';
import type { QuarantineRecord } from '../store/store.ts';

/**
 * What a quarantine contains: one identity, every member of a segment, or every agent with a label.
 * Selectors are judged at decision time against the segments and labels decisions use, so an agent
 * that joins later is contained too.
 */
export type QuarantineTarget =
  | { readonly kind: 'identity'; readonly uri: string }
  | { readonly kind: 'segment'; readonly name: string }
  | { readonly kind: 'label'; readonly key: string; readonly value: string };

const SEGMENT_PREFIX = 'segment:';
const LABEL_PREFIX = 'label:';
/** As policy/load.ts checks a segment name. */
const SEGMENT_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * The key a quarantine is stored under (QuarantineRecord.spiffeId): the SPIFFE ID itself, or
 * `segment:NAME` / `label:KEY=VALUE`, which no SPIFFE ID can be (those start `spiffe://`).
 */
export function targetKey(t: QuarantineTarget): string {
  return t.kind === 'identity' ? t.uri : t.kind === 'segment' ? `${SEGMENT_PREFIX}${t.name}` : `${LABEL_PREFIX}${t.key}=${t.value}`;
}

/** The target of a stored key; throws AirlockError(BadRequest) on one that is none. */
export function targetOf(key: string): QuarantineTarget {
  if (key.startsWith(SEGMENT_PREFIX)) return segmentTarget(key.slice(SEGMENT_PREFIX.length));
  if (key.startsWith(LABEL_PREFIX)) return labelTarget(key.slice(LABEL_PREFIX.length));
  return { kind: 'identity', uri: parseSpiffeId(key).uri };
}

export function segmentTarget(name: string): QuarantineTarget {
  if (!SEGMENT_NAME.test(name)) throw new AirlockError(ErrorCode.BadRequest, `"${name}" is not a segment name (lowercase a-z, 0-9, "-", ".")`);
  return { kind: 'segment', name };
}

/** `KEY=VALUE`, as a label is written for `airlock token create --label`. */
export function labelTarget(text: string): QuarantineTarget {
  try {
    const [key, value] = parseLabel(text);
    return { kind: 'label', key, value };
  } catch (err) {
    throw new AirlockError(ErrorCode.BadRequest, `selector: ${(err as Error).message}`);
  }
}

/** How a target is shown: the identity, `segment NAME` or `label KEY=VALUE`. */
export function describeTarget(t: QuarantineTarget): string {
  return t.kind === 'identity' ? t.uri : t.kind === 'segment' ? `segment ${t.name}` : `label ${t.key}=${t.value}`;
}

/** The selector quarantines of a snapshot, compiled once per change (never per decision). */
export interface QuarantineSelectors {
  readonly segments: ReadonlyMap<string, QuarantineRecord>;
  readonly labels: readonly { readonly key: string; readonly value: string; readonly record: QuarantineRecord }[];
}

/** The selectors among `quarantined` (keys that are not SPIFFE IDs); stored keys that parse as neither are skipped. */
export function compileSelectors(quarantined: ReadonlyMap<string, QuarantineRecord>): QuarantineSelectors | undefined {
  const segments = new Map<string, QuarantineRecord>();
  const labels: { key: string; value: string; record: QuarantineRecord }[] = [];
  for (const [key, record] of quarantined) {
    if (!key.startsWith(SEGMENT_PREFIX) && !key.startsWith(LABEL_PREFIX)) continue;
    let t: QuarantineTarget;
    try {
      t = targetOf(key);
    } catch {
      continue;
    }
    if (t.kind === 'segment') segments.set(t.name, record);
    else if (t.kind === 'label') labels.push({ key: t.key, value: t.value, record });
  }
  return segments.size === 0 && labels.length === 0 ? undefined : { segments, labels };
}

const inForce = (q: QuarantineRecord | undefined, now: number): q is QuarantineRecord => q !== undefined && (q.until === undefined || q.until > now);

/**
 * The quarantine in force that contains `id` at `now`, if any: set on it, on a segment it is in, or
 * on a label it has. `labels` are its attested labels when the caller has them; else the registry's.
 * Without selectors this is one map lookup: segments are computed only when a segment is quarantined.
 */
export function quarantineOf(snapshot: DecisionSnapshot, id: SpiffeId, now: number, labels?: Labels): QuarantineRecord | undefined {
  const own = snapshot.quarantined.get(id.uri);
  if (inForce(own, now)) return own;
  const selectors = snapshot.quarantineSelectors;
  if (selectors === undefined) return undefined;
  const held = labels ?? snapshot.agents.get(id.uri)?.labels ?? {};
  for (const l of selectors.labels) if (held[l.key] === l.value && inForce(l.record, now)) return l.record;
  if (selectors.segments.size > 0) {
    for (const segment of snapshot.engine.segmentsOf(id, held)) {
      const q = selectors.segments.get(segment);
      if (inForce(q, now)) return q;
    }
  }
  return undefined;
}

/** Whether `target` names `id` (with its attested `labels`) in `snapshot`, whatever its time bounds. */
export function targetMatches(snapshot: DecisionSnapshot, t: QuarantineTarget, id: SpiffeId, labels: Labels): boolean {
  if (t.kind === 'identity') return t.uri === id.uri;
  if (t.kind === 'label') return labels[t.key] === t.value;
  return snapshot.engine.segmentsOf(id, labels).includes(t.name);
}

/**
 * Refuses a policy version without a segment quarantined now (a delete, a rollback): it would release
 * the segment's members with no release, by someone who may not hold the responder role. Changing a
 * quarantined segment's selector is allowed: the quarantine follows the segment as defined.
 */
export function keepQuarantinedSegments(snapshot: DecisionSnapshot, next: { readonly segmentNames: readonly string[] }, now = Date.now()): void {
  const segments = snapshot.quarantineSelectors?.segments;
  if (segments === undefined || segments.size === 0) return;
  const kept = new Set(next.segmentNames);
  for (const [name, q] of segments) {
    if (!kept.has(name) && inForce(q, now)) throw new AirlockError(ErrorCode.Conflict, `segment "${name}" is quarantined (${q.reason}): release it first (airlock release --segment ${name})`);
  }
}
