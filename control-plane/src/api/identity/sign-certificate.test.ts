import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode } from '@airlock/common/errors';
import { createRootLogger } from '@airlock/common/logging';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRegistry } from '@airlock/common/telemetry';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JoinTokens } from '../../attestation/join-tokens.ts';
import { DecisionState } from '../../authz/decision-state.ts';
import { AgentRegistry } from '../../authz/registry.ts';
import { CertificateAuthority } from '../../ca/ca.ts';
import { Revocations } from '../../ca/revocations.ts';
import { makeCsr } from '../../ca/test-csr.ts';
import { createControlPlaneMetrics } from '../../monitoring/metrics.ts';
import { PolicyEngine } from '../../policy/engine.ts';
import { SqliteStore } from '../../store/sqlite-store.ts';
import { controlPlaneSpiffeId } from '../../main.ts';
import { Quarantines } from '../../incident/quarantines.ts';
import { CertificateIssuer } from './sign-certificate.ts';
import { NO_AUDIT } from '../../audit/event.ts';

const TD = 'airlock.test';

describe('SignCertificate never issues the control plane its own identity', () => {
  let dir: string;
  let store: SqliteStore;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-sign-'));
    store = SqliteStore.open(dir);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a Kubernetes token of the control plane service account (PermissionDenied, counted), and issues to another', async () => {
    const ca = CertificateAuthority.loadOrCreate(dir, TD);
    const decisions = new DecisionState(PolicyEngine.empty(TD));
    const metrics = createControlPlaneMetrics(createRegistry('test'));
    const attested: string[] = [controlPlaneSpiffeId(TD), `spiffe://${TD}/ns/agents/sa/planner`];
    const issuer = new CertificateIssuer({
      ca: { issuing: () => ca, bundlePem: () => ca.certPem },
      joinTokens: new JoinTokens(store, TD),
      store,
      agents: await AgentRegistry.load(store, decisions),
      revocations: await Revocations.load({ store, decisions, trustBundlePem: () => ca.certPem }),
      // A token the API server vouches for, of the service account the control plane runs as.
      kubernetes: { attest: () => Promise.resolve({ spiffeId: attested.shift() ?? '', labels: {} }) },
      svidTtlMs: 60_000,
      metrics,
      logger: createRootLogger({ process: 'test', level: 'silent' }),
      audit: NO_AUDIT,
    });
    await expect(issuer.signCertificate(undefined, { csrPem: makeCsr().csrPem, kubernetesSaToken: 'token', inboundAddress: '127.0.0.1:1' })).rejects.toMatchObject({
      code: ErrorCode.PermissionDenied,
      message: expect.stringContaining("the control plane's own identity") as unknown,
    });
    expect((await metrics.issuanceRefused.get()).values.find((v) => v.labels.reason === 'control_plane_identity')?.value).toBe(1);
    const ok = await issuer.signCertificate(undefined, { csrPem: makeCsr().csrPem, kubernetesSaToken: 'token', inboundAddress: '127.0.0.1:1' });
    expect(ok.spiffeId).toBe(`spiffe://${TD}/ns/agents/sa/planner`);
  });

  it('refuses the renewal of a quarantined identity, and renews it once released', async () => {
    const ca = CertificateAuthority.loadOrCreate(dir, TD);
    const decisions = new DecisionState(PolicyEngine.empty(TD));
    const quarantines = await Quarantines.load(store, decisions);
    const issuer = new CertificateIssuer({
      ca: { issuing: () => ca, bundlePem: () => ca.certPem },
      joinTokens: new JoinTokens(store, TD),
      store,
      agents: await AgentRegistry.load(store, decisions),
      revocations: await Revocations.load({ store, decisions, trustBundlePem: () => ca.certPem }),
      quarantines,
      svidTtlMs: 60_000,
      metrics: createControlPlaneMetrics(createRegistry('test')),
      logger: createRootLogger({ process: 'test', level: 'silent' }),
      audit: NO_AUDIT,
    });
    const agent = parseSpiffeId(`spiffe://${TD}/ns/agents/sa/planner`);
    await quarantines.quarantine({ spiffeId: agent.uri, reason: 'incident', actor: 'alice', since: Date.now() });
    await expect(issuer.signCertificate(agent, { csrPem: makeCsr().csrPem, inboundAddress: '' })).rejects.toMatchObject({ code: ErrorCode.PermissionDenied, message: expect.stringContaining('quarantined') as unknown });
    await quarantines.release(agent.uri);
    expect((await issuer.signCertificate(agent, { csrPem: makeCsr().csrPem, inboundAddress: '' })).spiffeId).toBe(agent.uri);
  });
});
