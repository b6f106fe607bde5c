import { enumOf, fields, recordRefs, sourceSegments, str, type Problems } from './load.ts';
import type { PolicyMode } from './types.ts';
import type { TreeMap, TreeNode } from './yaml-tree.ts';

/** What an anomaly leads to: recorded only, that call denied, or the agent quarantined (with an incident record). */
export type BaselineResponse = 'alert' | 'deny' | 'quarantine';

/**
 * A validated Baseline document: the agents of `fromSegments` have the flows they use learned for
 * `learnMs` from their first call; after that a call on a new flow, or at more than `rateFactor`
 * times a flow's learned peak rate, is an anomaly answered by `response` (README "Behaviour
 * baselines"). `dry-run`: recorded and counted as `alert`, whatever `response` says.
 * Enforced by the control plane on allowed OUTBOUND decisions (see baselines/).
 */
export interface BaselineDoc {
  readonly name: string;
  readonly fromSegments: readonly string[];
  readonly learnMs: number;
  readonly response: BaselineResponse;
  readonly rateFactor: number;
  readonly mode: PolicyMode;
  readonly at: string;
}

export const DEFAULT_RATE_FACTOR = 10;
const MAX_RATE_FACTOR = 1000;
/** Learning lasts 1s (tests) to 30 days. */
const MAX_LEARN_MS = 30 * 24 * 3600_000;
const DURATION = /^([1-9][0-9]{0,8})(s|m|h|d)$/;
const UNIT_MS = { s: 1000, m: 60_000, h: 3600_000, d: 24 * 3600_000 } as const;

/** `spec` of a Baseline; undefined when invalid (the problems say why). */
export function baselineSpec(name: string | undefined, spec: TreeMap, problems: Problems): Omit<BaselineDoc, 'name' | 'at'> | undefined {
  const before = problems.list.length;
  const s = fields(spec, 'spec.', ['from', 'learn', 'response', 'rateFactor', 'mode'], problems);
  const fromSegments = sourceSegments(s.get('from'), spec, problems);
  if (fromSegments === null) return undefined;
  const learnMs = learn(s.get('learn'), problems, spec);
  const response = enumOf<BaselineResponse>(s.get('response'), 'spec.response', ['alert', 'deny', 'quarantine'], problems, spec, undefined);
  const rateFactor = factor(s.get('rateFactor'), problems);
  const mode = enumOf<PolicyMode>(s.get('mode'), 'spec.mode', ['enforce', 'dry-run'], problems, spec, 'enforce');
  if (name !== undefined) recordRefs(name, spec, problems, 'Baseline');
  if (problems.list.length > before || fromSegments === undefined || learnMs === undefined || response === undefined || rateFactor === undefined || mode === undefined) return undefined;
  return { fromSegments, learnMs, response, rateFactor, mode };
}

/** `30s`, `15m`, `24h`, `7d`: 1s to 30 days. */
function learn(node: TreeNode | null | undefined, problems: Problems, parent: TreeNode): number | undefined {
  const text = str(node, 'spec.learn', problems, parent);
  if (text === undefined) return undefined;
  const m = DURATION.exec(text);
  const ms = m === null ? undefined : Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  if (ms === undefined || ms > MAX_LEARN_MS) {
    problems.add(node, `"spec.learn" must be a duration like 30s, 15m, 24h or 7d (at most 30d), got "${text.slice(0, 40)}"`);
    return undefined;
  }
  return ms;
}

function factor(node: TreeNode | null | undefined, problems: Problems): number | undefined {
  if (node === undefined) return DEFAULT_RATE_FACTOR;
  const v = node?.kind === 'scalar' ? node.value : undefined;
  if (typeof v === 'number' && Number.isFinite(v) && v >= 1.5 && v <= MAX_RATE_FACTOR) return v;
  problems.add(node ?? undefined, `"spec.rateFactor" must be a number from 1.5 to ${MAX_RATE_FACTOR}`);
  return undefined;
}
