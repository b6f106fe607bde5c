import type { IncomingMessage } from 'node:http';
import type { Authorizer, AuthzRequest, Decision } from '../authz/authorizer.ts';
import { readMcpRequest, readSkippedMcp, type McpRead } from './read-request.ts';
import { sendsMcpSpecHeaders } from './spec-headers.ts';

/** Counts bodies read for MCP, skipped, and read after all (the control plane asked for one skipped). */
export interface McpBodyCounter {
  count(body: 'read' | 'skipped' | 'reread'): void;
}

/**
 * readMcpRequest, its POST bodies counted as read or skipped. `read` false: the scope says no rule
 * reads MCP there; a request that sends Mcp-Method or Mcp-Name has its body read all the same
 * (sendsMcpSpecHeaders), so that headers contradicting it are denied wherever the call goes.
 */
export async function readCounted(req: IncomingMessage, maxBytes: number, scanBytes: number, read: boolean, counter: McpBodyCounter | undefined): Promise<McpRead> {
  const mcp = await readMcpRequest(req, maxBytes, scanBytes, read || sendsMcpSpecHeaders(req.rawHeaders));
  if (counter !== undefined && req.method === 'POST') counter.count(mcp.skipped === true ? 'skipped' : 'read');
  return mcp;
}

/**
 * Asks about a call. When its body was skipped (the pushed scope said no rule reads MCP for the
 * destination) and the control plane, on its own current snapshot, needs it (the scope was stale),
 * the body, not forwarded yet, is read and the same call asked about again: a skipped body is never
 * judged as "no MCP" where a rule reads MCP. A skipped body of a refused call is read too, so that the
 * refusal reaches an MCP client as a JSON-RPC error for its id, as it does where bodies are read. The
 * question and the reading the call goes on with are returned.
 */
export async function authorizeReadingIfAsked(
  authorizer: Authorizer,
  question: AuthzRequest,
  req: IncomingMessage,
  mcp: McpRead,
  maxBytes: number,
  counter?: McpBodyCounter,
): Promise<{ decision: Decision; mcp: McpRead; question: AuthzRequest }> {
  const decision = await authorizer.authorize(question);
  if (decision.allowed || mcp.skipped !== true) return { decision, mcp, question };
  const read = await readSkippedMcp(req, mcp, maxBytes);
  // Refused: the body is read only to answer an MCP client with a JSON-RPC error for its request's id.
  if (decision.mcpBodyRequired !== true) return { decision, mcp: read, question };
  counter?.count('reread');
  const again: AuthzRequest = { ...question, mcp: read.message, mcpHeaderMismatch: read.headerMismatch, mcpBodySkipped: false };
  return { decision: await authorizer.authorize(again), mcp: read, question: again };
}
