import { AuthorizeRequest, Direction, Verdict, type AuthorizeResult } from '@airlock/proto/authorization/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch, openAuthorizeStream, startTestControlPlane, type TestControlPlane, RESEARCHER, RESEARCHERS_TO_EXAMPLE as POLICY } from '../../testing/test-control-plane.ts';

describe('AuthorizeStream of an identity revoked while the stream is open', () => {
  let t: TestControlPlane;

  beforeAll(async () => {
    t = await startTestControlPlane(POLICY, 'airlock-stream-revoke-');
  });
  afterAll(() => t.close());

  // The stream verifies its caller once, when it opens; revocation must still reach it. Each check
  // is denied ("identity revoked", a 403 to the agent) rather than the stream cut, which would turn
  // the checks in flight into 503s.
  it('denies every later check of the open stream, whatever the policy says', async () => {
    const { cp } = t;
    const check = { id: 1, request: AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: RESEARCHER, destinationHost: 'api.example.com', destinationPort: 443, method: 'CONNECT' }) };
    const stream = openAuthorizeStream(cp, t.svid(RESEARCHER));
    const send = (): Promise<AuthorizeResult[]> => stream.send([check]);
    try {
      expect((await send())[0]?.decision?.verdict).toBe(Verdict.VERDICT_ALLOW);

      const res = await adminFetch(cp, '/v1/agents/revoke', {
        method: 'POST',
        headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ identity: RESEARCHER }),
      });
      expect(res.status).toBe(200);

      for (const results of [await send(), await send()]) {
        expect(results[0]?.decision).toMatchObject({ verdict: Verdict.VERDICT_DENY, reason: 'identity revoked' });
      }
    } finally {
      stream.close();
    }
  });
});
