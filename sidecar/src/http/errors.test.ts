import { TlsMode, Verdict, type AuthorizeResponse } from '@airlock/proto/authorization/v1';
import { describe, expect, it } from 'vitest';
import { toDecision } from '../authz/proto-mapping.ts';
import { quietLogger } from '../testing/fakes.ts';
import { assertAllowed, errorReply, MCP_DENIED_CODE, MCP_RATE_LIMITED_CODE } from './errors.ts';

const log = quietLogger();
const DENY = { verdict: Verdict.VERDICT_DENY, decisionId: 'd1', reason: 'rate limited: RateLimit "q" allows 1 request per 1000 ms per source; retry after 1500 ms', policy: '', upstream: undefined, dryRunDeny: false, policyVersion: 4, rule: '', mcpAllowedTools: [], tls: TlsMode.TLS_MODE_UNSPECIFIED, ticket: '', approvalId: '', approvalWaitMs: 0, approvalOutcome: '', addressesRequired: false, mcpBodyRequired: false };

/** The reply the sidecar sends for `decision`, as the one rescue step maps it. */
function replyOf(res: Omit<AuthorizeResponse, 'mcpAllowedTools'> & { mcpAllowedTools: readonly string[] }, mcp?: { id: number; eventStream: boolean }): ReturnType<typeof errorReply> {
  const decision = toDecision({ ...res, mcpAllowedTools: [...res.mcpAllowedTools] });
  if (decision === undefined) throw new Error('no decision');
  try {
    assertAllowed(decision);
  } catch (err) {
    return errorReply(err, log, mcp);
  }
  throw new Error('allowed');
}

describe('a rate-limited denial', () => {
  it('is a 429 with Retry-After in whole seconds (rounded up) and the exact wait in the body', () => {
    const reply = replyOf({ ...DENY, rateLimited: true, retryAfterMs: 1500 });
    expect(reply).toEqual({
      status: 429,
      outcome: 'rate_limited',
      headers: { 'retry-after': '2' },
      body: { error: 'rate_limited', reason: DENY.reason, retryAfterMs: 1500, policyVersion: 4, decisionId: 'd1' },
    });
    // A wait under a second still says 1 (0 would mean "now"); a control plane that sent 0 is read as 1 ms.
    expect(replyOf({ ...DENY, rateLimited: true, retryAfterMs: 0 }).headers).toEqual({ 'retry-after': '1' });
  });

  it('is a JSON-RPC error with its own code for an MCP request, as JSON or as one event', () => {
    const json = replyOf({ ...DENY, rateLimited: true, retryAfterMs: 200 }, { id: 9, eventStream: false });
    expect(json).toMatchObject({ status: 200, outcome: 'rate_limited', headers: { 'retry-after': '1' }, body: { jsonrpc: '2.0', id: 9, error: { code: MCP_RATE_LIMITED_CODE, data: { error: 'rate_limited', retryAfterMs: 200 } } } });
    expect(replyOf({ ...DENY, rateLimited: true, retryAfterMs: 200 }, { id: 9, eventStream: true })).toMatchObject({ eventStream: true, body: { error: { code: MCP_RATE_LIMITED_CODE } } });
  });

  it('leaves other denials as they were: 403 (or -32050), no Retry-After, whatever retry_after_ms says', () => {
    const reply = replyOf({ ...DENY, reason: 'no policy allows GET /', rateLimited: false, retryAfterMs: 1500 });
    expect(reply).toMatchObject({ status: 403, outcome: 'denied', body: { error: 'denied' } });
    expect(reply.headers).toBeUndefined();
    expect(replyOf({ ...DENY, rateLimited: false, retryAfterMs: 0 }, { id: 1, eventStream: false }).body).toMatchObject({ error: { code: MCP_DENIED_CODE } });
  });
});
