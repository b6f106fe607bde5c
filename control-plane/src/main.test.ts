import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { createRootLogger } from '@airlock/common/logging';
import { AuthorizationServiceClient, Direction, Verdict, AuthorizeRequest, type AuthorizeResponse } from '@airlock/proto/authorization/v1';
import { IdentityServiceClient, type SignCertificateRequest, type SignCertificateResponse } from '@airlock/proto/identity/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from './ca/ca.ts';
import { makeCsr } from './ca/test-csr.ts';
import { controlPlaneConfig } from './config/config.ts';
import { startControlPlane, type RunningControlPlane } from './main.ts';
import { adminFetch, CLIENT_OPTIONS, controlPlaneChannel, startTestControlPlane, TD, type Identity, type TestControlPlane } from './testing/test-control-plane.ts';
import { auditEventsOf, auditSchemaProblems } from './testing/audit-events.ts';
import { verifyAuditChains } from './audit/verify-chain.ts';

const RESEARCHER = `spiffe://${TD}/ns/demo/sa/researcher`;
const TOOL = `spiffe://${TD}/ns/demo/sa/tool`;

const POLICY = `
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: researchers }
spec: { selector: { namespace: demo, serviceAccounts: [researcher] } }
---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: tools }
spec: { selector: { namespace: demo, serviceAccounts: ["tool*"] } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: researchers-to-tools }
spec:
  from: { segments: [researchers] }
  to: { segments: [tools], ports: [8080] }
  rules: [ { methods: [GET], paths: ["/v1/*"] } ]
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: researchers-to-example }
spec:
  from: { segments: [researchers] }
  to: { hosts: [api.example.com], ports: [443] }
  action: allow
`;


function signCertificate(cp: RunningControlPlane, req: Partial<SignCertificateRequest>, id?: Identity): Promise<SignCertificateResponse> {
  const client = new IdentityServiceClient(`127.0.0.1:${cp.grpcPort}`, controlPlaneChannel(cp.trustBundlePem, id), CLIENT_OPTIONS);
  return new Promise((resolve, reject) => {
    client.signCertificate({ csrPem: '', inboundAddress: '', ...req }, (err, res) => {
      client.close();
      if (err !== null) reject(err);
      else resolve(res);
    });
  });
}

function authorize(cp: RunningControlPlane, id: Identity | undefined, req: Partial<AuthorizeRequest>, caPem = cp.trustBundlePem): Promise<AuthorizeResponse> {
  const client = new AuthorizationServiceClient(`127.0.0.1:${cp.grpcPort}`, controlPlaneChannel(caPem, id), CLIENT_OPTIONS);
  const full = AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, method: 'GET', path: '/', ...req });
  return new Promise((resolve, reject) => {
    client.authorize(full, (err, res) => {
      client.close();
      if (err !== null) reject(err);
      else resolve(res);
    });
  });
}

async function grpcCode(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (err) {
    return (err as ServiceError).code;
  }
  throw new Error('expected the call to fail');
}

describe('control plane over real TLS', () => {
  let t: TestControlPlane;
  let cp: RunningControlPlane;
  let logs: Record<string, unknown>[];
  let researcher: Identity;
  let tool: Identity;

  // The admin API (/v1/) is HTTPS on its own port; /metrics and the probes stay plain HTTP.
  const http = (path: string, init: Parameters<typeof adminFetch>[2] = {}): Promise<Response> =>
    path.startsWith('/v1/') ? adminFetch(cp, path, init) : fetch(`http://127.0.0.1:${cp.httpPort}${path}`, init);
  const createToken = async (identity: string, auth = `Bearer ${cp.adminToken}`): Promise<Response> =>
    http('/v1/join-tokens', { method: 'POST', headers: { authorization: auth, 'content-type': 'application/json' }, body: JSON.stringify({ identity, ttlSeconds: 600 }) });

  async function enroll(identity: string, inboundAddress: string): Promise<Identity & { token: string }> {
    const res = await createToken(identity);
    expect(res.status).toBe(201);
    const body = (await res.json()) as { token: string; identity: string; expiresAt: string };
    expect(body.identity).toBe(identity);
    expect(Date.parse(body.expiresAt) - Date.now()).toBeGreaterThan(590_000);
    const { csrPem, keyPem } = makeCsr();
    const signed = await signCertificate(cp, { csrPem, joinToken: body.token, inboundAddress });
    expect(signed.spiffeId).toBe(identity);
    expect(signed.trustBundlePem).toBe(cp.trustBundlePem);
    return { certPem: signed.certChainPem, keyPem, token: body.token };
  }

  beforeAll(async () => {
    // Logging at level error, so the audit assertions below also prove audit lines ignore the level.
    t = await startTestControlPlane(POLICY);
    cp = t.cp;
    logs = t.logs;
    const r = await enroll(RESEARCHER, '127.0.0.1:15006');
    researcher = r;
    tool = await enroll(TOOL, '127.0.0.1:25006');
  });
  afterAll(() => t.close());

  it('is ready and serves metrics', async () => {
    expect((await http('/readyz')).status).toBe(200);
    const metrics = await (await http('/metrics')).text();
    expect(metrics).toContain('airlock_ca_certificates_issued_total{attestation="join_token",process="control-plane"} 2');
  });

  it('allows a mesh call and names the upstream sidecar', async () => {
    const res = await authorize(cp, researcher, { sourceSpiffeId: RESEARCHER, destinationHost: 'tool.demo', destinationPort: 8080, path: '/v1/search' });
    expect(res.verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(res.policy).toBe('researchers-to-tools');
    expect(res.upstream).toEqual({ address: '127.0.0.1:25006', spiffeId: TOOL });
    expect(res.decisionId).toMatch(/^[0-9a-f-]{36}$/);
    const audit = logs.find((l) => (l.audit as { decisionId?: string } | undefined)?.decisionId === res.decisionId);
    expect(audit).toMatchObject({ component: 'audit', msg: 'authorization decision' });
    expect(audit?.audit).toMatchObject({ kind: 'decision', direction: 'outbound', source: RESEARCHER, destination: TOOL, verdict: 'allow', policy: 'researchers-to-tools', mode: 'enforce', replica: expect.any(String) as unknown });
  });

  it('audits the path with its query values redacted: a query may carry a credential', async () => {
    const res = await authorize(cp, researcher, { sourceSpiffeId: RESEARCHER, destinationHost: 'tool.demo', destinationPort: 8080, path: '/v1/search?access_token=SECRET-Q&q=x&SECRET-BARE' });
    expect(res.verdict).toBe(Verdict.VERDICT_ALLOW); // policies match the path without its query
    const audit = auditEventsOf(logs).find((e) => e.decisionId === res.decisionId);
    // A parameter without "=" may be the credential itself.
    expect(audit?.path).toBe('/v1/search?access_token=[redacted]&q=[redacted]&[redacted]');
    expect(logs.some((l) => JSON.stringify(l).includes('SECRET-Q') || JSON.stringify(l).includes('SECRET-BARE'))).toBe(false);
  });

  it('denies what no policy allows, with a reason and no upstream', async () => {
    const res = await authorize(cp, researcher, { sourceSpiffeId: RESEARCHER, destinationHost: 'tool.demo', destinationPort: 8080, path: '/admin' });
    expect(res.verdict).toBe(Verdict.VERDICT_DENY);
    expect(res.reason).toMatch(/^no policy allows GET \/admin/);
    expect(res.upstream).toBeUndefined();
    const bypass = await authorize(cp, researcher, { sourceSpiffeId: RESEARCHER, destinationHost: 'tool.demo', destinationPort: 8080, path: '/v1/../admin' });
    expect(bypass.verdict).toBe(Verdict.VERDICT_DENY);
    expect(bypass.reason).toMatch(/^ambiguous path/);
  });

  it('allows an external host without an upstream', async () => {
    const res = await authorize(cp, researcher, { sourceSpiffeId: RESEARCHER, destinationHost: 'api.example.com', destinationPort: 443, method: 'CONNECT', path: '' });
    expect(res.verdict).toBe(Verdict.VERDICT_ALLOW);
    expect(res.upstream).toBeUndefined();
  });

  it('decides INBOUND calls for the destination sidecar', async () => {
    const res = await authorize(cp, tool, {
      direction: Direction.DIRECTION_INBOUND,
      sourceSpiffeId: RESEARCHER,
      destinationSpiffeId: TOOL,
      destinationHost: 'tool.demo',
      destinationPort: 8080,
      path: '/v1/x',
    });
    expect(res.verdict).toBe(Verdict.VERDICT_ALLOW);
  });

  it('refuses a question about another identity with PERMISSION_DENIED, audited', async () => {
    const before = logs.length;
    expect(await grpcCode(authorize(cp, researcher, { sourceSpiffeId: TOOL, destinationHost: 'researcher.demo', destinationPort: 8080 }))).toBe(status.PERMISSION_DENIED);
    expect(
      await grpcCode(authorize(cp, researcher, { direction: Direction.DIRECTION_INBOUND, sourceSpiffeId: RESEARCHER, destinationSpiffeId: TOOL, destinationHost: 'tool.demo', destinationPort: 8080 })),
    ).toBe(status.PERMISSION_DENIED);
    const refusals = auditEventsOf(logs.slice(before)).filter((e) => e.kind === 'refusal');
    expect(refusals).toHaveLength(2);
    expect(refusals[0]).toMatchObject({ operation: 'Authorize', reasonCode: 'permission_denied', caller: RESEARCHER, request: { direction: 'outbound', source: TOOL } });
    const metrics = await (await http('/metrics')).text();
    expect(metrics).toMatch(/airlock_authz_refused_total\{reason="permission_denied",process="control-plane"\} 2/);
  });

  it('refuses Authorize without a client certificate, or with one from another CA', async () => {
    expect(await grpcCode(authorize(cp, undefined, { sourceSpiffeId: RESEARCHER, destinationHost: 'tool.demo', destinationPort: 8080 }))).toBe(status.UNAUTHENTICATED);
    const otherDir = mkdtempSync(join(tmpdir(), 'airlock-other-ca-'));
    try {
      const other = CertificateAuthority.loadOrCreate(otherDir, TD);
      const { csrPem, keyPem } = makeCsr();
      const forged = { certPem: other.issueSvid(csrPem, RESEARCHER, 60_000).certPem, keyPem };
      expect(await grpcCode(authorize(cp, forged, { sourceSpiffeId: RESEARCHER, destinationHost: 'tool.demo', destinationPort: 8080 }))).toBe(status.UNAUTHENTICATED);
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it('refuses a used, unknown or missing join token with UNAUTHENTICATED', async () => {
    const { csrPem } = makeCsr();
    const used = (await enroll(`spiffe://${TD}/ns/demo/sa/once`, '127.0.0.1:35006')).token;
    expect(await grpcCode(signCertificate(cp, { csrPem, joinToken: used, inboundAddress: '127.0.0.1:35006' }))).toBe(status.UNAUTHENTICATED);
    expect(await grpcCode(signCertificate(cp, { csrPem, joinToken: 'x'.repeat(43), inboundAddress: '127.0.0.1:1' }))).toBe(status.UNAUTHENTICATED);
    expect(await grpcCode(signCertificate(cp, { csrPem, inboundAddress: '127.0.0.1:1' }))).toBe(status.UNAUTHENTICATED);
  });

  it('refuses a bad CSR without spending the token', async () => {
    const body = (await (await createToken(`spiffe://${TD}/ns/demo/sa/careful`)).json()) as { token: string };
    expect(await grpcCode(signCertificate(cp, { csrPem: 'garbage', joinToken: body.token, inboundAddress: '127.0.0.1:1' }))).toBe(status.INVALID_ARGUMENT);
    const ok = await signCertificate(cp, { csrPem: makeCsr().csrPem, joinToken: body.token, inboundAddress: '127.0.0.1:1' });
    expect(ok.spiffeId).toBe(`spiffe://${TD}/ns/demo/sa/careful`);
  });

  it('renews the same identity with a client certificate', async () => {
    const res = await signCertificate(cp, { csrPem: makeCsr().csrPem, inboundAddress: '127.0.0.1:15006' }, researcher);
    expect(res.spiffeId).toBe(RESEARCHER);
  });

  it('issues the identity the client certificate proves, never the one a CSR asks for', async () => {
    const victim = `spiffe://${TD}/ns/prod/sa/payments`;
    const res = await signCertificate(cp, { csrPem: makeCsr(victim, [victim, `spiffe://${TD}/admin/root`]).csrPem, inboundAddress: '127.0.0.1:15006' }, researcher);
    expect(res.spiffeId).toBe(RESEARCHER);
    const cert = new X509Certificate(res.certChainPem);
    expect(cert.subjectAltName).toBe(`URI:${RESEARCHER}`);
    expect(cert.subject).not.toContain('payments');
  });

  it('explains a call as Authorize decides it: a revoked destination is denied whatever the policy says', async () => {
    const other = `spiffe://${TD}/ns/demo/sa/tool-b`;
    await enroll(other, '127.0.0.1:45006');
    const explain = async (): Promise<{ allow: boolean; reason: string }> => {
      const res = await http('/v1/explain', { method: 'POST', headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ from: RESEARCHER, to: 'tool-b.demo:8080', method: 'GET', path: '/v1/x' }) });
      expect(res.status).toBe(200);
      return (await res.json()) as { allow: boolean; reason: string };
    };
    expect(await explain()).toMatchObject({ allow: true });
    const revoked = await http('/v1/agents/revoke', { method: 'POST', headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ identity: other }) });
    expect(revoked.status).toBe(200);
    expect(await explain()).toMatchObject({ allow: false, reason: 'identity revoked' });
    const res = await authorize(cp, researcher, { sourceSpiffeId: RESEARCHER, destinationHost: 'tool-b.demo', destinationPort: 8080, path: '/v1/x' });
    expect(res).toMatchObject({ verdict: Verdict.VERDICT_DENY, reason: 'identity revoked' });
  });

  it('protects the admin API with the bearer token and validates bodies', async () => {
    const noAuth = await http('/v1/join-tokens', { method: 'POST', body: JSON.stringify({ identity: RESEARCHER }) });
    expect(noAuth.status).toBe(401);
    expect(noAuth.headers.get('content-type')).toBe('application/json');
    expect(((await noAuth.json()) as { error: string }).error).toBe('unauthenticated');
    expect((await createToken(RESEARCHER, 'Bearer wrong')).status).toBe(401);
    const foreign = await createToken('spiffe://evil.test/ns/demo/sa/x');
    expect(foreign.status).toBe(400);
    expect(await foreign.json()).toMatchObject({ error: 'bad_request' });
    expect((await createToken('not-an-id')).status).toBe(400);
    const big = await http('/v1/join-tokens', { method: 'POST', headers: { authorization: `Bearer ${cp.adminToken}` }, body: 'x'.repeat(70_000) });
    expect(big.status).toBe(413);
    const defaults = await http('/v1/join-tokens', { method: 'POST', headers: { authorization: `Bearer ${cp.adminToken}` }, body: JSON.stringify({ identity: TOOL }) });
    expect(defaults.status).toBe(201);
    const tooLong = await http('/v1/join-tokens', { method: 'POST', headers: { authorization: `Bearer ${cp.adminToken}` }, body: JSON.stringify({ identity: TOOL, ttlSeconds: 86_401 }) });
    expect(tooLong.status).toBe(400);
    expect(logs.some((l) => JSON.stringify(l).includes(cp.adminToken))).toBe(false);
  });

  it('wrote every audit event of the calls above (decisions, refusals, admin actions) to the schema, in one chain that verifies', () => {
    const events = auditEventsOf(logs);
    expect(new Set(events.map((e) => e.kind))).toEqual(new Set(['chain-start', 'admin', 'decision', 'refusal']));
    for (const e of events) expect({ seq: e.seq, problems: auditSchemaProblems(e) }).toEqual({ seq: e.seq, problems: [] });
    const checked = verifyAuditChains([{ name: 'logs', text: logs.map((l) => JSON.stringify(l)).join('\n') }], { roots: [new X509Certificate(cp.trustBundlePem)] });
    expect(checked).toMatchObject({ events: events.length, chains: [{ firstSeq: 0, lastSeq: events.length - 1 }] });
    expect(checked.broken).toBeUndefined();
  });
});

describe('startControlPlane', () => {
  it('refuses a bad policy file with AIRLOCK_POLICY_INVALID naming file:line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-cp-bad-'));
    try {
      const policyFile = join(dir, 'policy.yaml');
      writeFileSync(policyFile, 'apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: a }\nspec:\n  selektor: {}\n');
      const config = controlPlaneConfig.load({ flags: { dataDir: join(dir, 'data'), grpcListen: '127.0.0.1:0', httpListen: '127.0.0.1:0', adminListen: '127.0.0.1:0', policyFile } });
      await expect(startControlPlane(config, { logger: createRootLogger({ process: 't', level: 'silent' }) })).rejects.toMatchObject({
        code: 'AIRLOCK_POLICY_INVALID',
        message: expect.stringContaining(`${policyFile}:5:3: unknown field "spec.selektor"`) as unknown,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses part of a bring-your-own CA (caCertFile without its key and bundle) before creating any state', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-cp-byo-'));
    try {
      const config = controlPlaneConfig.load({ flags: { dataDir: join(dir, 'data'), grpcListen: '127.0.0.1:0', httpListen: '127.0.0.1:0', adminListen: '127.0.0.1:0', caCertFile: join(dir, 'ca.pem') } });
      await expect(startControlPlane(config, { logger: createRootLogger({ process: 't', level: 'silent' }) })).rejects.toMatchObject({
        code: 'AIRLOCK_CONFIG_INVALID',
        message: expect.stringContaining('caCertFile, caKeyFile and caBundleFile go together') as unknown,
      });
      expect(existsSync(join(dir, 'data'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses injection settings with an unknown key before creating any state', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-cp-inj-'));
    try {
      writeFileSync(join(dir, 'injection.yaml'), 'image: ghcr.io/airlock-dev/airlock:0.1.0\ncontrolPlane: cp:15012\nimagePulPolicy: Always\n');
      const config = controlPlaneConfig.load({ flags: { dataDir: join(dir, 'data'), grpcListen: '127.0.0.1:0', httpListen: '127.0.0.1:0', injectionListen: '127.0.0.1:0', injectionConfigFile: join(dir, 'injection.yaml') } });
      await expect(startControlPlane(config, { logger: createRootLogger({ process: 't', level: 'silent' }) })).rejects.toMatchObject({
        code: 'AIRLOCK_CONFIG_INVALID',
        message: expect.stringContaining('imagePulPolicy: unknown setting') as unknown,
      });
      expect(existsSync(join(dir, 'data'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps its CA and admin token across restarts', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-cp-restart-'));
    try {
      const config = controlPlaneConfig.load({ flags: { dataDir: dir, grpcListen: '127.0.0.1:0', httpListen: '127.0.0.1:0', adminListen: '127.0.0.1:0' } });
      const logger = createRootLogger({ process: 't', level: 'silent' });
      const first = await startControlPlane(config, { logger });
      await first.close();
      const second = await startControlPlane(config, { logger });
      await second.close();
      expect(second.trustBundlePem).toBe(first.trustBundlePem);
      expect(second.adminToken).toBe(first.adminToken);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
