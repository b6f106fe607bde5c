import { describe, expect, it } from 'vitest';
import { AuthorizationServiceService, AuthorizeRequest, AuthorizeResponse, Direction, Verdict, type AuthorizeStreamRequest, type AuthorizeStreamResponse } from '@airlock/proto/authorization/v1';
import { AuthorizationService } from '@airlock/proto/authorization/v1/stream';

const generated = AuthorizationServiceService.authorizeStream;
const reusing = AuthorizationService.authorizeStream;

function request(checks: number, pathBytes = 10): AuthorizeStreamRequest {
  return {
    checks: Array.from({ length: checks }, (_, i) => ({
      id: i + 1,
      request: AuthorizeRequest.fromPartial({
        direction: Direction.DIRECTION_OUTBOUND,
        sourceSpiffeId: 'spiffe://airlock.test/ns/demo/sa/planner',
        destinationHost: 'researcher.demo',
        destinationPort: 80,
        method: 'GET',
        path: `/v1/${'p'.repeat(pathBytes)}/é${i}`,
        headers: [{ name: 'host', value: 'researcher.demo' }, { name: 'x-n', value: String(i) }],
      }),
    })),
  };
}

function response(results: number, ticketChars = 380): AuthorizeStreamResponse {
  return {
    results: Array.from({ length: results }, (_, i) => ({
      id: i + 1,
      refusal: i % 7 === 3 ? { code: 8, message: 'exhausted' } : undefined,
      decision: i % 7 === 3 ? undefined : AuthorizeResponse.fromPartial({ verdict: Verdict.VERDICT_ALLOW, decisionId: `d-${i}`, reason: 'allowed', policy: 'p', policyVersion: 3, upstream: { address: '127.0.0.1:1', spiffeId: 'spiffe://airlock.test/ns/demo/sa/researcher' }, ticket: 'T'.repeat(ticketChars) }),
    })),
  };
}

describe('AuthorizeStream serializers that reuse their writer', () => {
  it('write the same bytes as the generated ones, message after message, small and large', () => {
    // In an order where a small message follows a large one (the kept writer is larger than it needs).
    const requests = [request(1), request(4), request(512, 200), request(1), request(3, 70_000), request(2)];
    const responses = [response(1), response(4), response(512), response(1), response(2, 70_000), response(1, 0), response(0)];
    for (const m of requests) expect(reusing.requestSerialize(m).equals(generated.requestSerialize(m))).toBe(true);
    for (const m of responses) expect(reusing.responseSerialize(m).equals(generated.responseSerialize(m))).toBe(true);
  });

  it('return bytes that later messages do not overwrite', () => {
    const first = reusing.responseSerialize(response(2));
    const copy = Buffer.from(first);
    reusing.responseSerialize(response(3, 50));
    expect(first.equals(copy)).toBe(true);
  });

  it('start the next message afresh after one that failed half-way', () => {
    // A check id that is not a uint32 throws once the checks before it are written.
    const bad = { checks: [...request(3).checks, { id: -1, request: undefined }] };
    expect(() => reusing.requestSerialize(bad)).toThrow();
    const next = request(2);
    expect(reusing.requestSerialize(next).equals(generated.requestSerialize(next))).toBe(true);
    expect(AuthorizationService.authorizeStream.requestDeserialize(reusing.requestSerialize(next))).toEqual(next);
  });
});
