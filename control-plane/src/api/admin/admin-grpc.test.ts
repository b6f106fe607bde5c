import { join } from 'node:path';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { AdminServiceClient, DocumentKind, type ListDocumentsResponse } from '@airlock/proto/admin/v1';
import { AuthorizationServiceClient, AuthorizeRequest, Direction } from '@airlock/proto/authorization/v1';
import { IdentityServiceClient } from '@airlock/proto/identity/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newAdminKeyAndCsr } from '../../ca/admin-csr.ts';
import { CertificateAuthority } from '../../ca/ca.ts';
import type { RunningControlPlane } from '../../main.ts';
import { adminFetch, CLIENT_OPTIONS, controlPlaneChannel, startTestControlPlane, TD, type Identity, type TestControlPlane } from '../../testing/test-control-plane.ts';

const SEGMENT = (name: string): string => `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: ${name} }
spec: { selector: { namespace: ${name} } }
`;

describe('AdminService over mTLS: admin certificates and bearer tokens, same roles as HTTP', () => {
  let t: TestControlPlane;
  let cp: RunningControlPlane;
  const clients: AdminServiceClient[] = [];

  beforeAll(async () => {
    t = await startTestControlPlane(SEGMENT('research'), 'airlock-admin-grpc-');
    cp = t.cp;
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await t.close();
  });

  /** What `airlock admin-cert create` does: a local key, a CSR, the admin API signs it. */
  async function adminCert(name: string, role: string): Promise<Identity> {
    const { keyPem, csrPem } = newAdminKeyAndCsr();
    const res = await adminFetch(cp, '/v1/admin-certs', {
      method: 'POST',
      headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name, role, csrPem }),
    });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { certPem: string; spiffeId: string };
    expect(body.spiffeId).toBe(`spiffe://${TD}/admin/${name}`);
    return { keyPem, certPem: body.certPem };
  }

  function client(cert?: Identity): AdminServiceClient {
    const c = new AdminServiceClient(`127.0.0.1:${cp.grpcPort}`, controlPlaneChannel(cp.trustBundlePem, cert), CLIENT_OPTIONS);
    clients.push(c);
    return c;
  }

  const list = (c: AdminServiceClient, md = new Metadata()): Promise<ListDocumentsResponse> =>
    new Promise((resolve, reject) => c.listDocuments({ kind: DocumentKind.DOCUMENT_KIND_SEGMENT }, md, (err, res) => (err === null ? resolve(res) : reject(err))));
  const apply = (c: AdminServiceClient, yaml: string, md = new Metadata()): Promise<{ version: number; changed: boolean }> =>
    new Promise((resolve, reject) => c.applyPolicy({ yaml, file: 'grpc-test' }, md, (err, res) => (err === null ? resolve(res) : reject(err))));
  const code = async (p: Promise<unknown>): Promise<number> => {
    try {
      await p;
      return status.OK;
    } catch (err) {
      return (err as ServiceError).code;
    }
  };

  it('lets a viewer certificate list but not apply', async () => {
    const viewer = client(await adminCert('alice', 'viewer'));
    const listed = await list(viewer);
    expect(listed.documents.map((d) => d.name)).toEqual(['research']);
    const err = await apply(viewer, SEGMENT('viewers')).catch((e: unknown) => e as ServiceError);
    expect((err as ServiceError).code).toBe(status.PERMISSION_DENIED);
    expect((err as ServiceError).details).toContain('needs role editor');
    expect((await list(viewer)).documents.map((d) => d.name)).toEqual(['research']);
  });

  it('lets an editor certificate apply, as a new version named after it', async () => {
    const editor = client(await adminCert('bob', 'editor'));
    const before = (await list(editor)).version;
    const applied = await apply(editor, SEGMENT('editors'));
    expect(applied).toMatchObject({ version: before + 1, changed: true });
    expect((await list(editor)).documents.map((d) => d.name)).toEqual(['research', 'editors']);
    const history = await new Promise<{ versions: { actor: string }[] }>((resolve, reject) =>
      editor.listPolicyVersions({ limit: 1 }, (err, res) => (err === null ? resolve(res) : reject(err))),
    );
    expect(history.versions[0]?.actor).toBe('cert:bob');
  });

  it('lists and deletes ThreatFeed documents as their own kind', async () => {
    const editor = client(await adminCert('carol', 'editor'));
    await apply(editor, 'apiVersion: airlock.dev/v1\nkind: ThreatFeed\nmetadata: { name: bad }\nspec: { source: { file: /nonexistent/bad.txt } }\n');
    const feeds = await new Promise<ListDocumentsResponse>((resolve, reject) => editor.listDocuments({ kind: DocumentKind.DOCUMENT_KIND_THREAT_FEED }, (err, res) => (err === null ? resolve(res) : reject(err))));
    expect(feeds.documents.map((d) => [d.kind, d.name])).toEqual([[DocumentKind.DOCUMENT_KIND_THREAT_FEED, 'bad']]);
    expect((await list(editor)).documents.map((d) => d.name)).not.toContain('bad');
    const deleted = await new Promise<{ changed: boolean }>((resolve, reject) => editor.deleteDocument({ kind: DocumentKind.DOCUMENT_KIND_THREAT_FEED, name: 'bad' }, (err, res) => (err === null ? resolve(res) : reject(err))));
    expect(deleted.changed).toBe(true);
  });

  it('explains a tools/call with its arguments, as HTTP does', async () => {
    const editor = client(await adminCert('carol', 'editor'));
    await apply(editor, `${SEGMENT('agents')}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: bank }
spec:
  from: { segments: [agents] }
  to: { hosts: [tools.example.com] }
  rules: [ { mcp: { tools: [transfer], arguments: [ { path: amount, max: 100 }, { path: memo, maxLength: 9, loggable: true } ] } } ]
  action: allow
`);
    const explain = (argsJson: string) =>
      new Promise<{ allow: boolean; rule: string; reason: string; arguments: { path: string; value: string }[] }>((resolve, reject) =>
        editor.explain({ from: `spiffe://${TD}/ns/agents/sa/a`, to: 'tools.example.com', method: '', path: '/mcp', tool: 'transfer', headers: [], argsJson }, (err, res) => (err === null ? resolve(res) : reject(err))),
      );
    expect(await explain('{"amount":100,"memo":"rent"}')).toMatchObject({ allow: true, rule: 'rules[0]', arguments: [{ path: 'amount', value: '[redacted]' }, { path: 'memo', value: '"rent"' }] });
    const no = await explain('{"amount":101,"memo":"rent"}');
    expect(no).toMatchObject({ allow: false, arguments: [{ path: 'amount', value: '[redacted]' }] });
    expect(no.reason).toMatch(/argument "amount" is above the maximum 100/);
    expect(await code(explain('[1]'))).toBe(status.INVALID_ARGUMENT);
    expect(await code(explain('{'))).toBe(status.INVALID_ARGUMENT);
  });

  it('refuses a certificate from a foreign CA', async () => {
    const foreign = CertificateAuthority.loadOrCreate(join(t.dataDir, '..', 'foreign'), TD);
    const { csrPem, keyPem } = newAdminKeyAndCsr();
    const certPem = foreign.issueAdminCertificate(csrPem, 'mallory', 600_000).certPem;
    // TLS may refuse the handshake before the service sees it (UNAVAILABLE); either way no answer.
    expect([status.UNAUTHENTICATED, status.UNAVAILABLE]).toContain(await code(list(client({ keyPem, certPem }))));
  });

  it('refuses a workload SVID, and an admin-shaped certificate that was not issued as one', async () => {
    expect(await code(list(client(t.svid(`spiffe://${TD}/ns/demo/sa/researcher`))))).toBe(status.UNAUTHENTICATED);
    // Signed by our CA with an admin URI, but never recorded with a role: no role, no access.
    const { csrPem, keyPem } = newAdminKeyAndCsr();
    const unrecorded = CertificateAuthority.loadOrCreate(t.dataDir, TD).issueAdminCertificate(csrPem, 'alice', 600_000).certPem;
    expect(await code(list(client({ keyPem, certPem: unrecorded })))).toBe(status.UNAUTHENTICATED);
  });

  it('is no workload identity: an admin certificate can neither ask for a decision, renew into an SVID nor watch the trust bundle', async () => {
    const admin = await adminCert('ops', 'admin');
    expect(await code(list(client(admin)))).toBe(status.OK);
    const channel = controlPlaneChannel(cp.trustBundlePem, admin);
    const authz = new AuthorizationServiceClient(`127.0.0.1:${cp.grpcPort}`, channel, CLIENT_OPTIONS);
    const identity = new IdentityServiceClient(`127.0.0.1:${cp.grpcPort}`, channel, CLIENT_OPTIONS);
    try {
      const request = AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: `spiffe://${TD}/admin/ops`, destinationHost: 'api.example.com', destinationPort: 443, method: 'GET', path: '/' });
      const authorized = await code(new Promise((resolve, reject) => authz.authorize(request, (err, res) => (err === null ? resolve(res) : reject(err)))));
      const renewed = await code(new Promise((resolve, reject) => identity.signCertificate({ csrPem: newAdminKeyAndCsr().csrPem, inboundAddress: '127.0.0.1:15006' }, (err, res) => (err === null ? resolve(res) : reject(err)))));
      const watched = await code(
        new Promise((resolve, reject) => {
          const call = identity.watchTrustBundle({});
          call.on('data', (m) => {
            call.cancel();
            resolve(m);
          });
          call.on('error', (err: ServiceError) => (err.code === status.CANCELLED ? resolve(undefined) : reject(err)));
        }),
      );
      for (const answer of [authorized, renewed, watched]) expect([status.UNAUTHENTICATED, status.PERMISSION_DENIED]).toContain(answer);
    } finally {
      authz.close();
      identity.close();
    }
  });

  it('answers UNAUTHENTICATED to an anonymous caller or an unknown token, and takes a bearer token in metadata', async () => {
    const anonymous = client();
    expect(await code(list(anonymous))).toBe(status.UNAUTHENTICATED);
    const bad = new Metadata();
    bad.set('authorization', 'Bearer not-a-token');
    expect(await code(list(anonymous, bad))).toBe(status.UNAUTHENTICATED);
    const admin = new Metadata();
    admin.set('authorization', `Bearer ${cp.adminToken}`);
    expect((await apply(anonymous, SEGMENT('tokens'), admin)).changed).toBe(true);
  });

  it('takes the bearer scheme in any case in metadata (RFC 9110), as HTTP does', async () => {
    const anonymous = client();
    for (const scheme of ['bearer', 'BEARER']) {
      const md = new Metadata();
      md.set('authorization', `${scheme} ${cp.adminToken}`);
      expect((await list(anonymous, md)).documents.length).toBeGreaterThan(0);
    }
  });
});
