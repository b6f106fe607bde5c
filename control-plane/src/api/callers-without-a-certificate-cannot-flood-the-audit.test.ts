import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { AuthorizationServiceClient, AuthorizeRequest, Direction, type AuthorizeCheck } from '@airlock/proto/authorization/v1';
import { IdentityServiceClient } from '@airlock/proto/identity/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCsr } from '../ca/test-csr.ts';
import { CLIENT_OPTIONS, controlPlaneChannel, openAuthorizeStream, startTestControlPlane, TD, type TestControlPlane } from '../testing/test-control-plane.ts';
import { auditEventsOf } from '../testing/audit-events.ts';

const RESEARCHER = `spiffe://${TD}/ns/demo/sa/researcher`;
const POLICY = `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: researchers }
spec: { selector: { namespace: demo, serviceAccounts: [researcher] } }
`;
const check = (id: number): AuthorizeCheck => ({
  id,
  request: AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: RESEARCHER, destinationHost: 'api.example.com', destinationPort: 443, method: 'GET', path: `/flood/${id}` }),
});

/** The grpc status of a settled call (OK for a success). */
function codeOf(p: Promise<unknown>): Promise<number> {
  return p.then(
    () => status.OK,
    (e: unknown) => (e as ServiceError).code,
  );
}

/**
 * Anyone who reaches :15012 can call without a client certificate. Before, each refused check of a
 * stream, and each refused unary call, wrote an audit line: a loop could fill the audit trail.
 * Now such a stream ends at once, and what any peer can make us write is written at a bounded rate
 * (the refusals are still all counted in metrics).
 */
describe('callers without a client certificate cannot flood the audit trail', () => {
  let t: TestControlPlane;
  /** Lines logged since the test started. */
  let since: () => Record<string, unknown>[];

  beforeAll(async () => {
    t = await startTestControlPlane(POLICY, 'airlock-noncert-flood-');
  });
  afterAll(() => t.close());
  const mark = (): void => {
    const from = t.logs.length;
    since = () => t.logs.slice(from);
  };
  /** Lines written plus the lines they say were left out: what the flood would have written. */
  const accounted = (lines: Record<string, unknown>[]): number => lines.reduce((n, l) => n + 1 + (typeof l.suppressed === 'number' ? l.suppressed : 0), 0);
  /** The audit events among lines since the mark. */
  const events = (): Record<string, unknown>[] => auditEventsOf(since());

  // First in this file: the refusal log's bucket is full, so the one line is written.
  it('ends an AuthorizeStream without a certificate at once: 500 checks sent, one line written, no check decided', async () => {
    mark();
    const s = openAuthorizeStream(t.cp, undefined);
    try {
      let results = 0;
      s.stream.on('data', () => results++);
      for (let m = 0; m < 50; m++) s.stream.write({ checks: Array.from({ length: 10 }, (_, i) => check(m * 10 + i)) });
      const end = await s.ended;
      expect(end?.code).toBe(status.UNAUTHENTICATED);
      expect(results).toBe(0);
      const lines = since();
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ component: 'audit', msg: 'request refused', audit: { kind: 'refusal', operation: 'AuthorizeStream', reasonCode: 'unauthenticated' } });
      expect(String(events()[0]?.peer)).toMatch(/127\.0\.0\.1/);
    } finally {
      s.close();
    }
  });

  it('writes a bounded number of lines for 300 unary Authorize calls without a certificate, and counts them all', async () => {
    mark();
    const client = new AuthorizationServiceClient(`127.0.0.1:${t.cp.grpcPort}`, controlPlaneChannel(t.cp.trustBundlePem), CLIENT_OPTIONS);
    try {
      const calls = Array.from({ length: 300 }, (_, i) =>
        codeOf(new Promise((resolve, reject) => client.authorize(check(i).request ?? AuthorizeRequest.fromPartial({}), new Metadata(), (err, res) => (err === null ? resolve(res) : reject(err))))),
      );
      expect(new Set(await Promise.all(calls))).toEqual(new Set([status.UNAUTHENTICATED]));
    } finally {
      client.close();
    }
    const lines = events();
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThan(150);
    expect(lines.every((l) => l.kind === 'refusal' && l.operation === 'Authorize' && l.reasonCode === 'unauthenticated')).toBe(true);
    // Lines left out are counted on the next line written (those after the last one, not yet).
    expect(accounted(lines)).toBeLessThanOrEqual(300);
    const metrics = await (await fetch(`http://127.0.0.1:${t.cp.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/airlock_authz_refused_total\{reason="unauthenticated",process="control-plane"\} 301/);
  });

  it('does the same for WatchTrustBundle and for SignCertificate with made-up join tokens (the other RPCs a peer without a certificate may call)', async () => {
    mark();
    const client = new IdentityServiceClient(`127.0.0.1:${t.cp.grpcPort}`, controlPlaneChannel(t.cp.trustBundlePem), CLIENT_OPTIONS);
    const { csrPem } = makeCsr();
    try {
      const watches = Array.from({ length: 150 }, () => {
        const call = client.watchTrustBundle({});
        return codeOf(new Promise((resolve, reject) => {
          call.on('data', resolve);
          call.on('error', reject);
        }));
      });
      const signs = Array.from({ length: 150 }, (_, i) =>
        codeOf(new Promise((resolve, reject) => client.signCertificate({ csrPem, joinToken: `made-up-${i}`.padEnd(43, 'x'), inboundAddress: '127.0.0.1:1' }, (err, res) => (err === null ? resolve(res) : reject(err))))),
      );
      expect(new Set(await Promise.all([...watches, ...signs]))).toEqual(new Set([status.UNAUTHENTICATED]));
    } finally {
      client.close();
    }
    const lines = events();
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThan(150);
    expect(new Set(lines.map((l) => l.operation))).toEqual(new Set(['WatchTrustBundle', 'SignCertificate']));
  });
});
