// Issue 16 (found writing the threat model): an admin API token can be revoked. Through the real CLI
// against a real control plane: a token made for CI works, `airlock api-token revoke` ends it at
// once (401 on its next request, everything else unchanged), the list shows when (never a secret),
// and revoking an unknown name is a clear error.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminGet } from '../cli/src/admin-client.ts';
import type { AdminCredentials } from '../cli/src/credentials.ts';
import { startTestControlPlane, type TestControlPlane } from '../control-plane/src/testing/test-control-plane.ts';
import { airlock } from './support/airlock-cli.ts';

const SEGMENT = 'apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: demo }\nspec: { selector: { namespace: demo } }\n';

describe('airlock api-token revoke', () => {
  let t: TestControlPlane;
  let admin: AdminCredentials;
  let adminFile: string;

  beforeAll(async () => {
    t = await startTestControlPlane(SEGMENT, 'airlock-api-token-');
    admin = { server: t.cp.adminUrl, token: t.cp.adminToken, caFile: join(t.dataDir, 'trust-bundle.pem') };
    adminFile = join(t.dataDir, '..', 'admin.json');
    writeFileSync(adminFile, JSON.stringify(admin), { mode: 0o600 });
  });
  afterAll(() => t.close());

  it('ends a token at once, lists when, and keeps every other credential working', async () => {
    const made = await airlock(['api-token', 'create', '--name', 'ci', '--role', 'editor'], adminFile);
    expect(made.code).toBe(0);
    const ci: AdminCredentials = { ...admin, token: made.stdout.trim() };
    const other = (await airlock(['api-token', 'create', '--name', 'bot', '--role', 'viewer'], adminFile)).stdout.trim();
    expect(await adminGet(ci, '/v1/policy')).toMatchObject({ version: 1 });

    const revoked = await airlock(['api-token', 'revoke', 'ci', '-o', 'json'], adminFile);
    expect(revoked.stderr).toBe('');
    expect(revoked.code).toBe(0);
    expect(JSON.parse(revoked.stdout)).toMatchObject({ name: 'ci', alreadyRevoked: false });
    await expect(adminGet(ci, '/v1/policy')).rejects.toThrow(/revoked|401|unauthenticated/i);
    // The other token and the admin token are untouched.
    expect(await adminGet({ ...admin, token: other }, '/v1/policy')).toMatchObject({ version: 1 });
    expect(await adminGet(admin, '/v1/policy')).toMatchObject({ version: 1 });

    const listed = await airlock(['api-token', 'list', '-o', 'json'], adminFile);
    const items = JSON.parse(listed.stdout) as { name: string; revokedAt?: string }[];
    expect(items.map((i) => [i.name, i.revokedAt !== undefined])).toEqual([['bot', false], ['ci', true]]);
    expect(listed.stdout).not.toContain(made.stdout.trim());
    expect(listed.stdout).not.toContain(other);

    expect(JSON.parse((await airlock(['api-token', 'revoke', 'ci', '-o', 'json'], adminFile)).stdout)).toMatchObject({ alreadyRevoked: true });
    const unknown = await airlock(['api-token', 'revoke', 'nobody'], adminFile);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('no API token is named "nobody"');
    expect(unknown.stderr).not.toMatch(/\n\s+at /);
  });

  it('is for admins only: a revoked or a viewer token cannot revoke', async () => {
    const viewer = (await airlock(['api-token', 'create', '--name', 'reader', '--role', 'viewer'], adminFile)).stdout.trim();
    const viewerFile = join(t.dataDir, '..', 'viewer.json');
    writeFileSync(viewerFile, JSON.stringify({ ...admin, token: viewer }), { mode: 0o600 });
    const r = await airlock(['api-token', 'revoke', 'bot'], viewerFile);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/role viewer; this needs role admin/);
  });
});
