// Issue 16 (threat model: "the first admin token cannot be revoked"): the bootstrap admin tokens of
// every replica are retired at once with `airlock admin-token retire`, through the real CLI against
// two real replicas on a real etcd; a replica started afterwards registers none.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminGet } from '../cli/src/admin-client.ts';
import type { AdminCredentials } from '../cli/src/credentials.ts';
import type { RunningControlPlane } from '../control-plane/src/main.ts';
import { TD } from '../control-plane/src/testing/test-control-plane.ts';
import { startEtcd, type EtcdCluster } from './support/etcd.ts';
import { startReplica, writeSharedCa } from './support/replicas.ts';
import { airlock } from './support/airlock-cli.ts';


describe('airlock admin-token retire', () => {
  let etcd: EtcdCluster;
  let dir: string;
  let caFile: string;
  const replicas: RunningControlPlane[] = [];
  const start = async (): Promise<RunningControlPlane> => {
    const r = await startReplica({ etcd, dir, trustDomain: TD });
    replicas.push(r);
    return r;
  };
  const credentials = (server: RunningControlPlane, token: string): AdminCredentials => ({ server: server.adminUrl, token, caFile });
  const credentialsFile = (name: string, creds: AdminCredentials): string => {
    const path = join(dir, `${name}.json`);
    writeFileSync(path, JSON.stringify(creds), { mode: 0o600 });
    return path;
  };
  const works = async (creds: AdminCredentials): Promise<boolean> =>
    adminGet(creds, '/v1/policy').then(
      () => true,
      (err: unknown) => {
        expect(String(err)).toMatch(/unknown bearer token|401|unauthenticated/i);
        return false;
      },
    );

  beforeAll(async () => {
    etcd = await startEtcd(1);
    dir = mkdtempSync(join(tmpdir(), 'airlock-admin-token-retire-'));
    caFile = join(dir, 'root.pem');
    writeFileSync(caFile, writeSharedCa(dir));
  }, 60_000);
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.close()));
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('retires every replica\'s admin token for good, only when asked by the credential that replaces them', async () => {
    const [a, b] = [await start(), await start()];
    const adminA = credentialsFile('admin-a', credentials(a, a.adminToken));
    expect(await works(credentials(b, a.adminToken))).toBe(true);
    expect(await works(credentials(a, b.adminToken))).toBe(true);

    // With an admin token itself: refused, nothing changes (no one is locked out).
    const self = await airlock(['admin-token', 'retire'], adminA);
    expect(self.code).not.toBe(0);
    expect(self.stderr).toContain('not with an admin token');
    expect(self.stderr).not.toMatch(/\n\s+at /);
    expect(await works(credentials(a, b.adminToken))).toBe(true);

    const ops = (await airlock(['api-token', 'create', '--name', 'ops', '--role', 'admin'], adminA)).stdout.trim();
    expect(ops.length).toBeGreaterThan(16);
    const opsFile = credentialsFile('ops', credentials(b, ops));
    const retired = await airlock(['admin-token', 'retire', '-o', 'json'], opsFile);
    expect(retired.stderr).toBe('');
    expect(retired.code).toBe(0);
    expect(JSON.parse(retired.stdout)).toMatchObject({ retired: 2, alreadyRetired: false });

    // Both tokens, on both replicas, at once; the API token that replaced them keeps working.
    for (const server of [a, b]) {
      for (const token of [a.adminToken, b.adminToken]) expect(await works(credentials(server, token))).toBe(false);
      expect(await works(credentials(server, ops))).toBe(true);
    }
    // A replica started afterwards makes an admin-token file, but registers it nowhere.
    const c = await start();
    expect(c.adminToken.length).toBeGreaterThan(16);
    for (const server of [a, c]) expect(await works(credentials(server, c.adminToken))).toBe(false);
    expect(await works(credentials(c, ops))).toBe(true);

    const again = await airlock(['admin-token', 'retire'], opsFile);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^admin tokens were already retired \(/);
    const audit = (await adminGet(credentials(a, ops), '/v1/audit')) as { items: { action: string; actor: string; detail: string }[] };
    expect(audit.items.filter((e) => e.action === 'admin-token.retire').map((e): [string, unknown] => [e.actor, JSON.parse(e.detail)])).toEqual([['ops', { retired: 0 }], ['ops', { retired: 2 }]]);
  });

  it('explains itself with --help and refuses other verbs clearly', async () => {
    const file = credentialsFile('none', { server: 'https://127.0.0.1:1', token: 'x'.repeat(20), caFile });
    const help = await airlock(['admin-token', '--help'], file);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: airlock admin-token retire');
    const bad = await airlock(['admin-token', 'revoke'], file);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('expected `airlock admin-token retire`');
  });
});
