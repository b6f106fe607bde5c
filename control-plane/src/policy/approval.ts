import { duration } from '@airlock/common/config';
import { errorMessage } from '@airlock/common/errors';
import type { TreeMap, TreeNode } from './yaml-tree.ts';
import type { ApprovalDoc, McpRuleDoc } from './types.ts';

/** A held call waits this long for a human unless the rule says otherwise. */
export const DEFAULT_APPROVAL_TIMEOUT_MS = 120_000;
/** The longest a rule may hold a call (and so a connection, and a pending slot). */
export const MAX_APPROVAL_TIMEOUT_MS = 10 * 60_000;
export const APPROVAL_FIELDS = ['approve', 'approver', 'approvalTimeout'] as const;

const APPROVER_ROLES = ['responder', 'admin'] as const;

interface ProblemSink {
  add(node: TreeNode | null | undefined, message: string): void;
}

/**
 * A rule's `approve: required` (with `approver`, default responder, and `approvalTimeout`, default
 * 120s, at most 10m). Only on a rule about MCP `tools/call` with named tools: the approval is bound to
 * the exact call (method, tool, arguments), which a rule on paths alone could not name.
 */
export function approvalOf(r: ReadonlyMap<string, TreeNode | null>, rule: TreeMap, mcp: McpRuleDoc | undefined, problems: ProblemSink): ApprovalDoc | undefined {
  const approve = r.get('approve');
  const approver = r.get('approver');
  const timeout = r.get('approvalTimeout');
  if (approve === undefined) {
    if (approver !== undefined || timeout !== undefined) problems.add(approver ?? timeout, '"spec.rules[].approver" and "approvalTimeout" go with "approve: required"');
    return undefined;
  }
  if (approve?.kind !== 'scalar' || approve.value !== 'required') {
    problems.add(approve ?? rule, '"spec.rules[].approve" must be "required"');
    return undefined;
  }
  if (mcp === undefined || mcp.tools.length === 0 || (mcp.methods.length > 0 && !mcp.methods.every((m) => m === 'tools/call'))) {
    problems.add(approve, '"spec.rules[].approve" needs an "mcp" rule on tools/call naming its tools (mcp: {methods: [tools/call], tools: [...]}): an approval is bound to one exact tool call');
  }
  let role: ApprovalDoc['role'] = 'responder';
  if (approver !== undefined) {
    if (approver?.kind === 'scalar' && (APPROVER_ROLES as readonly unknown[]).includes(approver.value)) role = approver.value as ApprovalDoc['role'];
    else problems.add(approver ?? rule, `"spec.rules[].approver" must be one of ${APPROVER_ROLES.join(', ')}`);
  }
  let timeoutMs = DEFAULT_APPROVAL_TIMEOUT_MS;
  if (timeout !== undefined) {
    try {
      timeoutMs = duration({ description: 'approvalTimeout', minMs: 1000, maxMs: MAX_APPROVAL_TIMEOUT_MS }).parse(timeout?.kind === 'scalar' ? timeout.value : undefined);
    } catch (err) {
      problems.add(timeout ?? rule, `"spec.rules[].approvalTimeout": ${errorMessage(err)}`);
    }
  }
  return { role, timeoutMs };
}
