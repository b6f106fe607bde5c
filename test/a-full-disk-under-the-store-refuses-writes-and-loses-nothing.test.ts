// Issue 16 item 4 (faults): the disk under the control plane's store fills up while calls flow. The
// store directory is a 4 MiB tmpfs in the control plane's own mount namespace (nothing leaks to the
// host); the test fills it through /proc/<pid>/root. Decisions go on (they are made from memory),
// writes are refused with a clear 503, nothing half-written remains, and once space is freed writes
// work again, without a restart.
import { mkdtempSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch } from '../control-plane/src/testing/test-control-plane.ts';
import { fillToTheLastByte } from './support/full-disk.ts';
import { startMesh, type Mesh } from './support/mesh.ts';
import { AGENTS, STANDARD_POLICY } from './support/standard-mesh.ts';

describe('a full disk under the store', () => {
  let mesh: Mesh;
  let storeDir: string;
  /** The store directory as the control plane sees it (its mount namespace), from this process. */
  let seen: string;

  beforeAll(async () => {
    storeDir = mkdtempSync(join(tmpdir(), 'airlock-full-disk-'));
    mesh = await startMesh({
      agents: AGENTS,
      policy: STANDARD_POLICY,
      controlPlaneArgs: ['--store', `sqlite:${storeDir}`],
      controlPlaneWrap: ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o size=4m tmpfs "$0" && exec "$@"', storeDir],
    });
    seen = `/proc/${String(mesh.controlPlaneProcess()?.child.pid)}/root${storeDir}`;
  }, 60_000);
  afterAll(async () => {
    await mesh.close();
    rmSync(storeDir, { recursive: true, force: true });
  });

  const admin = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const res = await adminFetch({ adminUrl: mesh.creds.server, trustBundlePem: readFileSync(mesh.creds.caFile ?? '', 'utf8') }, path, {
      method,
      headers: { authorization: `Bearer ${mesh.creds.token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  const call = async (): Promise<number> => (await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search')).status;

  it('keeps deciding, refuses writes with 503 store_unavailable, and writes again once space is freed', { timeout: 60_000 }, async () => {
    expect(await call()).toBe(200);
    const before = await admin('GET', '/v1/join-tokens');
    expect(before.status).toBe(200);

    // Fill the store's disk to the last byte.
    const filler = fillToTheLastByte(seen);

    // Decisions are made from memory: calls go on.
    for (let i = 0; i < 5; i++) expect(await call()).toBe(200);
    // Writes are refused, clearly, and the process stays up.
    for (let i = 0; i < 3; i++) {
      const refused = await admin('POST', '/v1/join-tokens', { identity: `spiffe://${mesh.trustDomain}/ns/agents/sa/late-${i}` });
      expect(refused.status).toBe(503);
      expect(refused.json).toMatchObject({ error: 'store_unavailable' });
      expect(String(refused.json.reason)).toMatch(/disk is full/);
    }
    expect(mesh.controlPlaneProcess()?.child.exitCode).toBeNull();
    expect((await admin('GET', '/v1/join-tokens')).json).toEqual(before.json);

    // Space comes back: the next write works, with no restart.
    unlinkSync(filler);
    const created = await admin('POST', '/v1/join-tokens', { identity: `spiffe://${mesh.trustDomain}/ns/agents/sa/after` });
    expect(created.status).toBe(201);
    expect(await call()).toBe(200);
    // Nothing half-written: the store holds the token made after, and none of those refused.
    const listed = (await admin('GET', '/v1/join-tokens')).json.items as { identity: string }[];
    expect(listed.map((t) => t.identity).filter((i) => i.includes('/sa/late-') || i.endsWith('/sa/after'))).toEqual([`spiffe://${mesh.trustDomain}/ns/agents/sa/after`]);
  });
});
