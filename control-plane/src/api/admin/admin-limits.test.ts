import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { AdminServiceClient } from '@airlock/proto/admin/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch, CLIENT_OPTIONS, controlPlaneChannel, startTestControlPlane, type TestControlPlane } from '../../testing/test-control-plane.ts';
import { auditEventsOf } from '../../testing/audit-events.ts';

const segment = (name: string): string => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: ${name} }\nspec: { selector: { namespace: ${name}, serviceAccounts: [a, b] } }\n`;
/** A valid bundle that takes the worker a while (half a second or so): requests overlap. */
const HEAVY = Array.from({ length: 4000 }, (_, i) => segment(`s${i}`)).join('---\n');

interface Answer {
  readonly status: number;
  readonly retryAfter: string | null;
  readonly body: { error?: string; reason?: string; version?: number; changed?: boolean };
}

describe('admin limits: policy requests are bounded per request, per caller and in all, over HTTP and gRPC', () => {
  let t: TestControlPlane;
  const tokens = new Map<string, string>();
  const clients: AdminServiceClient[] = [];

  beforeAll(async () => {
    t = await startTestControlPlane(segment('base'), 'airlock-admin-limits-');
    for (const [name, role] of [['eve', 'viewer'], ['mallory', 'viewer'], ['v3', 'viewer'], ['v4', 'viewer'], ['v5', 'viewer'], ['ed', 'editor']]) {
      const res = await adminFetch(t.cp, '/v1/api-tokens', {
        method: 'POST',
        headers: { authorization: `Bearer ${t.cp.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name, role }),
      });
      tokens.set(name ?? '', ((await res.json()) as { token: string }).token);
    }
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await t.close();
  });

  const post = async (who: string, op: 'diff' | 'apply', yaml: string): Promise<Answer> => {
    const res = await adminFetch(t.cp, `/v1/policy/${op}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.get(who) ?? ''}`, 'content-type': 'application/json' },
      body: JSON.stringify({ yaml }),
    });
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Answer['body'] };
  };

  const grpc = (who: string, rpc: 'diffPolicy' | 'applyPolicy', yaml: string): Promise<{ code: number; details: string }> => {
    const c = new AdminServiceClient(`127.0.0.1:${t.cp.grpcPort}`, controlPlaneChannel(t.cp.trustBundlePem), CLIENT_OPTIONS);
    clients.push(c);
    const md = new Metadata();
    md.set('authorization', `Bearer ${tokens.get(who) ?? ''}`);
    return new Promise((resolve) => {
      c[rpc]({ yaml, file: 'grpc' }, md, (err: ServiceError | null) => resolve(err === null ? { code: status.OK, details: '' } : { code: err.code, details: err.details }));
    });
  };

  const refusals = (): Record<string, unknown>[] => auditEventsOf(t.logs).filter((e) => e.kind === 'refusal' && String(e.operation).includes('/'));

  it.each([
    ['documents', '---\n'.repeat(20_000), 'request:10001:1: more than 10000 documents (the limit)'],
    ['YAML nodes', `[${'a,'.repeat(250_000)}]`, 'request:1:400000: more than 200000 YAML nodes (the limit)'],
    ['aliases', `a: &a x\nb: [${'*a, '.repeat(100)}]\n`, 'request:2:261: more than 64 aliases (the limit)'],
    ['nesting', '['.repeat(100_000), 'request:1:65: more than 64 levels of nesting (the limit)'],
    ['keys of a mapping', Array.from({ length: 10_000 }, (_, i) => `k${i}: v`).join('\n'), 'request:65:1: a mapping with more than 64 keys (the limit)'],
  ])('refuses a diff over its limit of %s with 413 too_large naming it, and audits who, where and why', async (_limit, yaml, why) => {
    const before = refusals().length;
    const answer = await post('eve', 'diff', yaml);
    expect(answer).toEqual({ status: 413, retryAfter: null, body: { error: 'too_large', reason: `invalid policy:\n  - ${why}` } });
    expect(refusals().slice(before)).toEqual([expect.objectContaining({ kind: 'refusal', caller: 'eve', operation: 'POST /v1/policy/diff', reasonCode: 'AIRLOCK_TOO_LARGE', reason: `invalid policy:\n  - ${why}` })]);
    // The gRPC twins: the same limit, RESOURCE_EXHAUSTED, audited under their own route.
    expect(await grpc('eve', 'diffPolicy', yaml)).toEqual({ code: status.RESOURCE_EXHAUSTED, details: `invalid policy:\n  - ${why.replace('request', 'grpc')}` });
    expect(await grpc('ed', 'applyPolicy', yaml)).toEqual({ code: status.RESOURCE_EXHAUSTED, details: `invalid policy:\n  - ${why.replace('request', 'grpc')}` });
    expect(refusals().slice(before).map((l) => [l.caller, l.operation])).toEqual([
      ['eve', 'POST /v1/policy/diff'],
      ['eve', '/airlock.admin.v1.AdminService/DiffPolicy'],
      ['ed', '/airlock.admin.v1.AdminService/ApplyPolicy'],
    ]);
  });

  it('refuses a gRPC bundle over 1 MiB as too large (HTTP bodies are bounded the same)', async () => {
    expect(await grpc('eve', 'diffPolicy', `# ${'x'.repeat(1024 * 1024)}\n`)).toEqual({ code: status.RESOURCE_EXHAUSTED, details: `the policy is ${1024 * 1024 + 3} bytes; the limit is 1048576` });
    expect((await post('eve', 'diff', `# ${'x'.repeat(1024 * 1024)}\n`)).status).toBe(413);
  });

  it('lets a caller have 2 policy requests in flight: a third is 429 with Retry-After, audited; another caller is served', async () => {
    const before = refusals().length;
    const answers = await Promise.all([post('eve', 'diff', HEAVY), post('eve', 'diff', HEAVY), post('eve', 'diff', HEAVY), post('mallory', 'diff', HEAVY)]);
    const eve = answers.slice(0, 3);
    expect(eve.map((a) => a.status).sort()).toEqual([200, 200, 429]);
    expect(eve.find((a) => a.status === 429)).toEqual({ status: 429, retryAfter: '1', body: { error: 'too_many_requests', reason: '"eve" has 2 policy requests in flight (the limit); retry when one ends' } });
    expect(answers[3].status).toBe(200);
    expect(refusals().slice(before)).toEqual([expect.objectContaining({ kind: 'refusal', caller: 'eve', operation: 'POST /v1/policy/diff', reasonCode: 'AIRLOCK_TOO_MANY_REQUESTS' })]);
    // Slots are given back: the caller is served again.
    expect((await post('eve', 'diff', segment('x'))).status).toBe(200);
  });

  it('limits gRPC DiffPolicy per caller the same way (one limit for both APIs)', async () => {
    const answers = await Promise.all([post('eve', 'diff', HEAVY), grpc('eve', 'diffPolicy', HEAVY), grpc('eve', 'diffPolicy', HEAVY)]);
    expect(answers[0]).toMatchObject({ status: 200 });
    expect(answers.slice(1)).toContainEqual({ code: status.RESOURCE_EXHAUSTED, details: '"eve" has 2 policy requests in flight (the limit); retry when one ends' });
  });

  it('bounds policy requests in all at 4: a fifth caller is 429', async () => {
    const answers = await Promise.all(['eve', 'mallory', 'v3', 'v4', 'v5'].map((who) => post(who, 'diff', HEAVY)));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 200, 200, 429]);
    expect(answers.find((a) => a.status === 429)?.body.reason).toBe('4 policy requests are in flight (the limit); retry shortly');
  });

  it('applies a bundle read in the worker, as a new version the next decision follows', async () => {
    const applied = await post('ed', 'apply', segment('applied'));
    expect(applied).toMatchObject({ status: 200, body: { changed: true } });
    const listed = (await (await adminFetch(t.cp, '/v1/segments', { headers: { authorization: `Bearer ${tokens.get('eve') ?? ''}` } })).json()) as { version: number; items: { name: string }[] };
    expect(listed.version).toBe(applied.body.version);
    expect(listed.items.map((i) => i.name)).toEqual(['base', 'applied']);
    // A viewer may diff, never apply; an ordinary mistake is 400, not a limit, and not audited as a refusal.
    expect((await post('eve', 'apply', segment('nope'))).status).toBe(403);
    const before = refusals().length;
    expect((await post('ed', 'apply', 'kind: Nope\n')).body.error).toBe('policy_invalid');
    expect(refusals().length).toBe(before);
  });
});
