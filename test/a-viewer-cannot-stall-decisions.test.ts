// Issue 9: one `POST /v1/policy/diff` of ~1 MiB of YAML from a viewer token blocked the control
// plane's event loop for seconds, and every decision asked meanwhile failed closed (503). Admin
// bundles are now read in a worker thread within limits: decisions keep flowing during the attack.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import { AuthorizationServiceClient, AuthorizeRequest, Direction, Verdict } from '@airlock/proto/authorization/v1';
import { AdminServiceClient } from '@airlock/proto/admin/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../control-plane/src/ca/ca.ts';
import { makeCsr } from '../control-plane/src/ca/test-csr.ts';
import { adminFetch, CLIENT_OPTIONS, controlPlaneChannel, RESEARCHER, RESEARCHERS_TO_EXAMPLE as POLICY, TD } from '../control-plane/src/testing/test-control-plane.ts';
import { startMesh, type Mesh } from './support/mesh.ts';

/** The sidecar's decision timeout (authzTimeout): a decision later than this fails the call closed. */
const DECISION_TIMEOUT_MS = 250;
const MAX_BODY = 1024 * 1024;

/** YAML as large as a diff body may carry: `piece` repeated. */
const fill = (piece: string): string => piece.repeat(Math.floor((MAX_BODY - 64) / JSON.stringify(piece).length - 1));
const segment = (i: number): string => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: s${i} }\nspec: { selector: { namespace: n${i}, serviceAccounts: [a, b] } }\n`;

describe('a viewer posting hostile policy diffs cannot stall decisions', () => {
  let mesh: Mesh;
  let viewer: string;
  let authz: AuthorizationServiceClient;
  let trustBundle: string;
  let admin: { adminUrl: string; trustBundlePem: string };

  beforeAll(async () => {
    mesh = await startMesh({ policy: POLICY, agents: [], trustDomain: TD });
    trustBundle = readFileSync(join(mesh.dataDir, 'trust-bundle.pem'), 'utf8');
    admin = { adminUrl: mesh.creds.server, trustBundlePem: trustBundle };
    const created = await adminFetch(admin, '/v1/api-tokens', {
      method: 'POST',
      headers: { authorization: `Bearer ${mesh.creds.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'eve', role: 'viewer' }),
    });
    viewer = ((await created.json()) as { token: string }).token;
    const ca = CertificateAuthority.loadOrCreate(mesh.dataDir, TD);
    const { csrPem, keyPem } = makeCsr();
    const svid = { certPem: ca.issueSvid(csrPem, RESEARCHER, 600_000).certPem, keyPem };
    authz = new AuthorizationServiceClient(`127.0.0.1:${mesh.grpcPort}`, controlPlaneChannel(trustBundle, svid), CLIENT_OPTIONS);
  });
  afterAll(async () => {
    authz.close();
    await mesh.close();
  });

  /** One decision as a sidecar asks for it: answered within its timeout, or failed. */
  const decide = (): Promise<{ ok: boolean; why?: string; start: number; end: number }> => {
    const start = performance.now();
    const req = AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: RESEARCHER, destinationHost: 'api.example.com', destinationPort: 443, method: 'CONNECT', path: '' });
    return new Promise((resolve) => {
      authz.authorize(req, new Metadata(), { deadline: Date.now() + DECISION_TIMEOUT_MS }, (err, res) => {
        const end = performance.now();
        if (err !== null) resolve({ ok: false, why: err.message, start, end });
        else resolve({ ok: res.verdict === Verdict.VERDICT_ALLOW, why: res.reason, start, end });
      });
    });
  };

  const diff = async (yaml: string, token = viewer): Promise<{ status: number; body: { error?: string; reason?: string; changes?: unknown[] }; start: number; end: number }> => {
    const start = performance.now();
    const res = await adminFetch(admin, '/v1/policy/diff', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ yaml }),
    });
    return { status: res.status, body: (await res.json()) as never, start, end: performance.now() };
  };

  it('answers every decision in time while the hostile diffs are read, and refuses or completes each', async () => {
    expect((await decide()).ok).toBe(true);
    const decisions: Awaited<ReturnType<typeof decide>>[] = [];
    const attack = { on: true };
    // Two sidecars' worth of decisions, each asked as soon as the last is answered.
    const loops = [0, 1].map(async () => {
      while (attack.on) decisions.push(await decide());
    });
    const attacks = [];
    try {
      // The issue's attack: ~1 MiB of empty documents (refused by the document limit).
      attacks.push(await diff(fill('---\n')));
      // Nesting as deep as a body allows (refused by the nesting limit).
      attacks.push(await diff(fill('[')));
      // A valid bundle near the size limit: real work (a second or so of `yaml`), completed.
      const valid = Array.from({ length: 4000 }, (_, i) => segment(i)).join('---\n');
      attacks.push(await diff(valid));
    } finally {
      attack.on = false;
      await Promise.all(loops);
    }
    expect(attacks.map((a) => [a.status, a.body.error]), attacks[2]?.body.reason).toEqual([[413, 'too_large'], [413, 'too_large'], [200, undefined]]);
    expect(attacks[0]?.body.reason).toContain('more than 10000 documents (the limit)');
    expect(attacks[1]?.body.reason).toContain('more than 64 levels of nesting (the limit)');
    expect(attacks[2]?.body.changes).toHaveLength(4000);
    expect(decisions.filter((d) => !d.ok).map((d) => `${d.why ?? ''} after ${Math.round(d.end - d.start)} ms`)).toEqual([]);
    // Decisions were asked and answered while the valid bundle was being read, not only around it.
    const heavy = attacks[2];
    expect(decisions.filter((d) => heavy !== undefined && d.start > heavy.start && d.end < heavy.end).length).toBeGreaterThan(0);
  });

  it('answers decisions in time while the same bundles come over gRPC DiffPolicy', async () => {
    const admin = new AdminServiceClient(`127.0.0.1:${mesh.grpcPort}`, controlPlaneChannel(trustBundle), CLIENT_OPTIONS);
    const md = new Metadata();
    md.set('authorization', `Bearer ${viewer}`);
    const decisions: Awaited<ReturnType<typeof decide>>[] = [];
    const attack = { on: true };
    const loop = (async () => {
      while (attack.on) decisions.push(await decide());
    })();
    const results: string[] = [];
    try {
      for (const yaml of ['---\n'.repeat(262_144), '['.repeat(MAX_BODY)]) {
        results.push(await new Promise<string>((resolve) => admin.diffPolicy({ yaml, file: 'grpc' }, md, (err) => resolve(err === null ? 'ok' : err.details))));
      }
    } finally {
      attack.on = false;
      await loop;
      admin.close();
    }
    expect(results).toEqual([
      'invalid policy:\n  - grpc:10001:1: more than 10000 documents (the limit)',
      'invalid policy:\n  - grpc:1:65: more than 64 levels of nesting (the limit)',
    ]);
    expect(decisions.length).toBeGreaterThan(0);
    expect(decisions.filter((d) => !d.ok).map((d) => `${d.why ?? ''} after ${Math.round(d.end - d.start)} ms`)).toEqual([]);
  });
});
