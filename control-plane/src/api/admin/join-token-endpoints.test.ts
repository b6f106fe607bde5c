import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRootLogger } from '@airlock/common/logging';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashToken } from '../../attestation/token-hash.ts';
import { controlPlaneConfig } from '../../config/config.ts';
import { startControlPlane, type RunningControlPlane } from '../../main.ts';
import { adminFetch } from '../../testing/test-control-plane.ts';

const ID = 'spiffe://airlock.test/ns/demo/sa/researcher';

describe('join tokens through the admin API', () => {
  let dir: string;
  let cp: RunningControlPlane;
  const logs: Record<string, unknown>[] = [];
  const call = async (method: string, path: string, body?: unknown, token = cp.adminToken): Promise<{ status: number; json: Record<string, unknown> }> => {
    const res = await adminFetch(cp, path, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-tokens-'));
    const config = controlPlaneConfig.load({ flags: { trustDomain: 'airlock.test', dataDir: join(dir, 'data'), grpcListen: '127.0.0.1:0', httpListen: '127.0.0.1:0', adminListen: '127.0.0.1:0' } });
    // At level error: audit lines are written whatever the level.
    cp = await startControlPlane(config, { logger: createRootLogger({ process: 'control-plane', level: 'error', destination: { write: (s: string) => logs.push(JSON.parse(s) as Record<string, unknown>) } }) });
  });
  afterAll(async () => {
    await cp.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists tokens without secrets and revokes one by id (admin only)', async () => {
    const created = await call('POST', '/v1/join-tokens', { identity: ID });
    expect(created.status).toBe(201);
    const token = String(created.json.token);
    const id = String(created.json.id);

    const listed = await call('GET', '/v1/join-tokens');
    expect(listed.status).toBe(200);
    expect(listed.json.items).toEqual([expect.objectContaining({ id, identity: ID, status: 'unused' })]);
    expect(JSON.stringify(listed.json)).not.toContain(token);

    const viewer = await call('POST', '/v1/api-tokens', { name: 'ro', role: 'viewer' });
    const viewerToken = String(viewer.json.token);
    expect((await call('GET', '/v1/join-tokens', undefined, viewerToken)).status).toBe(403);
    expect((await call('POST', '/v1/join-tokens/revoke', { id }, viewerToken)).status).toBe(403);

    expect(await call('POST', '/v1/join-tokens/revoke', { id })).toMatchObject({ status: 200, json: { alreadyRevoked: false, token: { id, status: 'revoked' } } });
    expect((await call('POST', '/v1/join-tokens/revoke', { id: 'ffffffffffffffff' })).status).toBe(404);
    expect((await call('POST', '/v1/join-tokens/revoke', { id, extra: 1 })).status).toBe(400);
    expect((await call('GET', '/v1/join-tokens')).json.items).toEqual([expect.objectContaining({ id, status: 'revoked' })]);
  });

  it('audits each join token created: who, for which identity, id, expiry and labels, never the secret', async () => {
    const api = await call('POST', '/v1/api-tokens', { name: 'minter', role: 'admin' });
    const created = await call('POST', '/v1/join-tokens', { identity: ID, ttlSeconds: 120, labels: { team: 'research' } }, String(api.json.token));
    expect(created.status).toBe(201);
    const secret = String(created.json.token);
    const lines = logs.filter((l) => (l.audit as { action?: string; detail?: { id?: string } } | undefined)?.action === 'join-token.create' && (l.audit as { detail: { id?: string } }).detail.id === created.json.id);
    expect(lines).toEqual([
      expect.objectContaining({ component: 'audit', audit: expect.objectContaining({ kind: 'admin', actor: 'minter', role: 'admin', target: ID, detail: { id: created.json.id, expiresAt: created.json.expiresAt, labels: { team: 'research' } } }) as unknown }),
    ]);
    // Neither the secret nor the hash it is stored as (the id is only a prefix of it).
    expect(JSON.stringify(logs)).not.toContain(secret);
    expect(JSON.stringify(logs)).not.toContain(hashToken(secret));
    const events = (await call('GET', '/v1/audit')).json.items as { action: string; actor: string; target: string; detail: string }[];
    const event = events.find((e) => e.action === 'join-token.create' && e.actor === 'minter');
    expect(event).toMatchObject({ target: ID });
    expect(JSON.parse(event?.detail ?? '{}')).toEqual({ id: created.json.id, expiresAt: created.json.expiresAt, labels: { team: 'research' } });
    expect(JSON.stringify(events)).not.toContain(secret);
  });

  it("refuses a join token for the control plane's own identity, which every sidecar trusts to decide", async () => {
    for (const td of ['airlock.test', 'other.test']) {
      const refused = await call('POST', '/v1/join-tokens', { identity: `spiffe://${td}/ns/airlock-system/sa/airlock-control-plane` });
      expect(refused.status).toBe(400);
    }
    expect((await call('POST', '/v1/join-tokens', { identity: 'spiffe://airlock.test/ns/airlock-system/sa/another' })).status).toBe(201);
    const listed = (await call('GET', '/v1/join-tokens')).json.items as { identity: string }[];
    expect(listed.filter((t) => t.identity.endsWith('/sa/airlock-control-plane'))).toEqual([]);
  });

    it('shows the audit events to admins only, newest first, without token secrets', async () => {
    const viewer = await call('POST', '/v1/api-tokens', { name: 'auditor', role: 'viewer' });
    const viewerToken = String(viewer.json.token);
    expect((await call('GET', '/v1/audit', undefined, viewerToken)).status).toBe(403);
    const anonymous = await adminFetch(cp, '/v1/audit');
    expect(anonymous.status).toBe(401);
    const audit = await call('GET', '/v1/audit');
    expect(audit.status).toBe(200);
    const items = audit.json.items as { at: number; action: string; target: string }[];
    expect(items[0]).toMatchObject({ action: 'api-token.create', target: 'auditor' });
    expect(items.map((i) => i.action)).toEqual(expect.arrayContaining(['join-token.create', 'join-token.revoke']));
    expect(items.every((e, i) => i === 0 || (items[i - 1]?.at ?? 0) >= e.at)).toBe(true);
    expect(JSON.stringify(audit.json)).not.toContain(viewerToken);
  });
});
