import { X509Certificate } from 'node:crypto';
import type { Server } from 'node:http';
import { AirlockError, ConfigError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { createRootLogger, type Logger } from '@airlock/common/logging';
import { answerClientErrors, closeServer, boundPort } from '@airlock/common/net';
import { CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT, formatSpiffeId } from '@airlock/common/spiffe';
import { createRegistry, startAdminServer } from '@airlock/common/telemetry';
import type { Registry } from 'prom-client';
import { mkdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { AuditTrail } from './audit/audit-trail.ts';
import type { CheckpointSigner } from './audit/checkpoint-signature.ts';
import { auditSinks } from './audit/audit-sinks.ts';
import { createRequireRole } from './api/admin/admin-auth.ts';
import { AdminLimits } from './api/admin/admin-limits.ts';
import { StaticCertificateProvider } from './api/certificate-provider.ts';
import { startGrpcServer, type RunningGrpcServer } from './api/grpc-server.ts';
import type { AuthorizeStreamLimits } from './api/authorization/authorize-stream.ts';
import { refusalLog } from './api/rate-limit.ts';
import { adminApiElsewhereRoute, startAdminApiServer } from './api/admin/admin-server.ts';
import { adminCertEndpoints } from './api/admin/admin-cert-endpoints.ts';
import { caEndpoints } from './api/admin/ca-endpoints.ts';
import { serveEndpoints } from './api/admin/endpoints.ts';
import { joinTokenEndpoints } from './api/admin/join-token-endpoints.ts';
import { policyEndpoints } from './api/admin/policy-endpoints.ts';
import { revokeEndpoints } from './api/admin/revoke-endpoints.ts';
import { quarantineEndpoints } from './api/admin/quarantine-endpoints.ts';
import { approvalEndpoints } from './api/admin/approval-endpoints.ts';
import { Approvals } from './authz/approvals/approvals.ts';
import { Quarantines } from './incident/quarantines.ts';
import { toolPinEndpoints } from './mcp-pins/endpoints.ts';
import { ToolPins } from './mcp-pins/tool-pins.ts';
import { Incidents } from './incident/incidents.ts';
import { Baselines } from './baselines/baselines.ts';
import { containByBaseline } from './baselines/contain.ts';
import { baselineEndpoints } from './baselines/endpoints.ts';
import { RecentDecisions } from './incident/recent-decisions.ts';
import { ThreatFeeds } from './threat-feeds/threat-feeds.ts';
import { threatFeedEndpoints } from './threat-feeds/threat-feed-endpoints.ts';
import { ensureAdminToken } from './attestation/admin-token.ts';
import { JoinTokens } from './attestation/join-tokens.ts';
import { Authorizer } from './authz/authorize.ts';
import { AgentRegistry } from './authz/registry.ts';
import { TicketIssuer } from './authz/tickets/ticket-issuer.ts';
import { rotateTicketKeys, TicketKeys } from './authz/tickets/ticket-keys.ts';
import { DecisionState } from './authz/decision-state.ts';
import { McpBodyScopes } from './authz/mcp-body.ts';
import { PolicyEngine } from './policy/engine.ts';
import { CertificateIssuer } from './api/identity/sign-certificate.ts';
import { CaRing } from './ca/ca-ring.ts';
import { Revocations } from './ca/revocations.ts';
import { startCertificatePruning } from './ca/certificate-pruning.ts';
import { startKubernetesAttestation } from './attestation/kubernetes-attestation.ts';
import { checkAdminTransport, localAddressOf, type ControlPlaneConfig } from './config/config.ts';
import { createControlPlaneMetrics } from './monitoring/metrics.ts';
import { injectionSettings, startInjection } from './injection/start-injection.ts';
import { loadPolicyFile } from './policy/load.ts';
import { PolicyStore } from './policy/policy-store.ts';
import { PolicyWorker } from './policy/worker/policy-workers.ts';
import { watchStore } from './store/follow-store.ts';
import { watchStoreHealth } from './store/store-health.ts';
import { openStore } from './store/open-store.ts';
import { parseStoreLocation } from './store/store-location.ts';
import { loadKeyEncryptionKey } from './ca/key-encryption.ts';

export type { ControlPlaneConfig } from './config/config.ts';

/** Lifetime of the control plane's own serving certificate; it is reissued at half life. */
const SERVING_CERT_TTL_MS = 24 * 3_600_000;
/** How often a stored `ca activate --renew-now` request is checked for completion. */
const RENEW_NOW_CHECK_MS = 10_000;

export interface RunningControlPlane {
  /** The bound ports (tests listen on port 0). */
  readonly grpcPort: number;
  /** Plain HTTP: /metrics, /healthz, /readyz. */
  readonly httpPort: number;
  /** The admin JSON API (HTTPS unless adminTransport says otherwise), and its base URL on this machine. */
  readonly adminPort: number;
  readonly adminUrl: string;
  /** The sidecar injection webhook's port, when injectionListen is set. */
  readonly injectionPort: number | undefined;
  /** PEM of the trust bundle at start: what sidecars are given as `--ca-file` (also `<dataDir>/trust-bundle.pem`, kept current). */
  readonly trustBundlePem: string;
  /** PEM of the trust bundle now (it changes with every CA ring step, made here or on another replica). */
  trustBundle(): string;
  /** The admin bearer token (contents of `<dataDir>/admin-token`). */
  readonly adminToken: string;
  close(): Promise<void>;
}

export interface StartOptions {
  readonly logger?: Logger;
  readonly registry?: Registry;
  /** Bounds on each AuthorizeStream (tests set them low; deployed, the defaults hold). */
  readonly authorizeStreamLimits?: AuthorizeStreamLimits;
}

/**
 * Audit events are the security record, not diagnostics: they are written at any log level
 * (`logLevel: warn` quiets the control plane's chatter, never its decisions), and without field
 * redaction: an event carries only typed fields (identities, host, method, path with query values
 * redacted, verdict, policy; never headers or credentials), and redaction was a quarter of the
 * control plane's CPU per decision.
 */
function auditLogger(logger: Logger): Logger {
  return logger.child({ component: 'audit' }, { level: 'info', redact: { paths: [] } });
}

/** The SPIFFE ID the control plane serves as; sidecars check it instead of a host name. */
export function controlPlaneSpiffeId(trustDomain: string): string {
  return formatSpiffeId(trustDomain, CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT);
}

/**
 * Starts the control plane: store, CA, policy, then the gRPC and HTTP listeners. A bad policy
 * file throws AIRLOCK_POLICY_INVALID with every problem as file:line before anything listens.
 */
export async function startControlPlane(config: ControlPlaneConfig, opts: StartOptions = {}): Promise<RunningControlPlane> {
  const logger = opts.logger ?? createRootLogger({ process: 'control-plane', level: config.logLevel });
  const log = logger.child({ component: 'control-plane' });
  const registry = opts.registry ?? createRegistry('control-plane');
  const metrics = createControlPlaneMetrics(registry);
  let ready = false;

  // Policy first: a typo in it should fail fast, before any state is created.
  if (config.policyFile !== undefined) loadPolicyFile(config.policyFile);
  const injection = injectionSettings(config);
  const { caCertFile: certFile, caKeyFile: keyFile, caBundleFile: bundleFile } = config;
  const operator = certFile !== undefined && keyFile !== undefined && bundleFile !== undefined ? { certFile, keyFile, bundleFile } : undefined;
  if (operator === undefined && (certFile ?? keyFile ?? bundleFile) !== undefined) {
    throw new ConfigError(['caCertFile, caKeyFile and caBundleFile go together (bring-your-own CA): give all three or none']);
  }
  checkAdminTransport(config);
  // Replicas on etcd share the CA ring: its keys are sealed in the store with a key every replica holds.
  if (operator === undefined && config.caKeyEncryptionKeyFile === undefined && parseStoreLocation(config.store).kind === 'etcd') {
    throw new ConfigError(['store etcd with self-made roots needs caKeyEncryptionKeyFile (32 random bytes, base64: head -c 32 /dev/urandom | base64; the same file on every replica), or the operator CA files (caCertFile, caKeyFile, caBundleFile)']);
  }
  const kek = config.caKeyEncryptionKeyFile === undefined ? undefined : loadKeyEncryptionKey(config.caKeyEncryptionKeyFile);

  // The data dir holds the admin token and the trust bundle file whatever the store (etcd too).
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const store = await openStore(config);
  const cleanups: (() => Promise<void> | void)[] = [() => store.close()];
  // Watching before the state is read: what another replica writes meanwhile is applied once the holders exist.
  const follower = await watchStore(store, log, registry);
  cleanups.push(() => follower.close());
  const storeHealth = watchStoreHealth(store, { staleAfterMs: config.storeStaleAfter, registry, logger: log });
  cleanups.push(() => storeHealth.stop());
  const pruning = startCertificatePruning({ store, logger: log });
  cleanups.push(() => pruning.stop());
  // The stored policy versions; the start file is applied as one more version when it changes them.
  // One audit trail for every producer: a hash chain of this process, checkpoints signed with the serving key once it exists.
  let signer: CheckpointSigner | undefined;
  const audit = new AuditTrail({
    logger: auditLogger(logger),
    log: logger.child({ component: 'audit-trail' }),
    replica: config.replicaName ?? hostname(),
    signer: () => signer,
    checkpointEvery: config.auditCheckpointEvery,
    checkpointIntervalMs: config.auditCheckpointInterval,
    stateFile: join(config.dataDir, 'audit-chain.json'),
    sinks: auditSinks(config, registry, logger.child({ component: 'audit-sink' })),
  });
  cleanups.push(() => audit.close());
  // What every decision reads, one immutable snapshot swapped whole by its owners: policy, agents, revocations.
  const decisions = new DecisionState(PolicyEngine.empty(config.trustDomain));
  const agents = await AgentRegistry.load(store, decisions);
  const threatFeeds = new ThreatFeeds({ decisions, registry, logger: logger.child({ component: 'threat-feeds' }) });
  cleanups.push(() => threatFeeds.close());
  const policies = await PolicyStore.open({ store, decisions, trustDomain: config.trustDomain, audit, threatFeeds });
  if (config.policyFile !== undefined) {
    const applied = await policies.apply(readFileSync(config.policyFile, 'utf8'), config.policyFile, 'policy-file');
    log.info({ version: applied.version, changed: applied.changed }, 'policy file applied');
  } else if (policies.version() === 0) {
    log.warn('no policy: every call will be denied until one is applied');
  }
  const requireRole = createRequireRole(store);
  const closeAll = async (): Promise<void> => {
    ready = false;
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (err) {
        log.warn({ error: errorMessage(err) }, 'error while closing');
      }
    }
    cleanups.length = 0;
  };

  try {
    const ring = await CaRing.open({ dataDir: config.dataDir, trustDomain: config.trustDomain, store, ...(operator === undefined ? {} : { operator }), ...(kek === undefined ? {} : { kek }) });
    const adminToken = await ensureAdminToken(config.dataDir, store, (path) => log.warn({ path }, 'admin tokens are retired: the token in this file authenticates no one (use an API token or an admin certificate)'));
    const joinTokens = new JoinTokens(store, config.trustDomain);
    const selfId = controlPlaneSpiffeId(config.trustDomain);
    const serving = ring.issuing().issueServingCertificate(selfId, SERVING_CERT_TTL_MS, config.serverDnsNames);
    const certificates = new StaticCertificateProvider(ring.bundlePem(), serving.chainPem, serving.keyPem);
    signer = { keyPem: serving.keyPem, chainPem: serving.chainPem };
    const revocations = await Revocations.load({
      store,
      decisions,
      trustBundlePem: () => ring.bundlePem(),
      renewHintPem: () => ring.renewHintPem(),
      // The CAs trusted now; a certificate of another (a retired root) is pushed with no issuer: refused from any.
      issuerName: (id) => ring.verifiers().find((ca) => ca.id === id)?.x509.subject,
    });
    const quarantines = await Quarantines.load(store, decisions, log);
    // The last decisions naming each identity, for incident records (bounded; see recent-decisions.ts).
    const recentDecisions = new RecentDecisions();
    const incidents = new Incidents({ store, quarantines, recent: recentDecisions });
    const baselines = await Baselines.load({ store, audit, registry, limits: { maxFlows: config.baselineMaxFlows, maxIdentities: config.baselineMaxIdentities }, logger: logger.child({ component: 'baselines' }), isQuarantined: (id) => quarantines.isQuarantined(id), contain: containByBaseline({ quarantines, incidents, store, audit }) });
    cleanups.push(() => baselines.close());
    const toolPins = await ToolPins.load({ store, decisions, registry, logger: logger.child({ component: 'tool-pins' }), quarantine: (r) => quarantines.quarantine(r) });
    const ticketKeys = await TicketKeys.open({ store, ...(kek === undefined ? {} : { kek }) });
    follower.start({ agents, revocations, policies, ring, quarantines, ticketKeys, toolPins, baselines });
    cleanups.push(rotateTicketKeys(ticketKeys, config.ticketKeyRotation, log));
    const kubernetes = await startKubernetesAttestation({
      jwks: config.kubernetesJwks,
      issuer: config.kubernetesIssuer,
      tokenReview: config.kubernetesApiServer === undefined ? undefined : { apiServer: config.kubernetesApiServer, caFile: config.kubernetesApiCaFile, tokenFile: config.kubernetesApiTokenFile },
      trustDomain: config.trustDomain,
      onReloadError: (reason) => log.warn({ reason }, 'Kubernetes JWKS reload failed; keeping the keys held'),
    });
    if (kubernetes !== undefined) cleanups.push(() => kubernetes.stop());
    metrics.certificateExpiry.set({ certificate: 'root' }, new X509Certificate(ring.issuing().certPem).validToDate.getTime() / 1000);
    metrics.certificateExpiry.set({ certificate: 'serving' }, serving.notAfter.getTime() / 1000);
    const renewServing = (): void => {
      try {
        const next = ring.issuing().issueServingCertificate(selfId, SERVING_CERT_TTL_MS, config.serverDnsNames);
        certificates.update({ certPem: next.chainPem, keyPem: next.keyPem });
        signer = { keyPem: next.keyPem, chainPem: next.chainPem };
        metrics.certificateExpiry.set({ certificate: 'serving' }, next.notAfter.getTime() / 1000);
        log.info({ notAfter: next.notAfter.toISOString(), issuer: next.issuer }, 'serving certificate renewed');
      } catch (err) {
        log.error({ error: errorMessage(err) }, 'serving certificate renewal failed');
      }
    };
    const renew = setInterval(renewServing, SERVING_CERT_TTL_MS / 2);
    renew.unref();
    cleanups.push(() => clearInterval(renew));
    // An `activate --renew-now` request is stored (it survives restarts) until the sidecars it targets renewed.
    const settle = setInterval(() => {
      ring.settleRenewNow().then(
        (done) => {
          if (done) log.info('every identity renewed from the active root: the renew-now request is done');
        },
        (err: unknown) => log.warn({ error: errorMessage(err) }, 'cannot check the renew-now request'),
      );
    }, RENEW_NOW_CHECK_MS);
    settle.unref();
    cleanups.push(() => clearInterval(settle));
    // A rollover step: new handshakes (to us and between sidecars) follow at once; open ones finish.
    cleanups.push(
      ring.onChange((changes) => {
        certificates.update({ caPem: ring.bundlePem() });
        if (changes.includes('issuer')) {
          renewServing();
          metrics.certificateExpiry.set({ certificate: 'root' }, new X509Certificate(ring.issuing().certPem).validToDate.getTime() / 1000);
        }
        revocations.bundleChanged();
      }),
    );

    // Refusals any peer can cause (no client certificate, a made-up join token) are written at a bounded rate.
    const refusals = refusalLog(audit);
    // Admin-submitted bundles are read in a worker thread, never on the loop that answers Authorize.
    const worker = new PolicyWorker({ logger: log });
    cleanups.push(() => worker.close());
    const limits = new AdminLimits({ audit, policies, worker });
    // One readiness for /readyz and grpc.health.v1.Health.
    const notReadyReason = (): string | undefined => (ready ? storeHealth.staleReason() : 'starting');
    const listenerLimits = { maxConnections: config.maxConnections, headersTimeoutMs: config.headersTimeout, requestTimeoutMs: config.requestTimeout, tlsHandshakeTimeoutMs: config.tlsHandshakeTimeout };
    // Calls held for a human approval live here, in this replica (README "Human approval").
    const approvals = new Approvals({
      onTimeout: (r) => audit.admin({ actor: 'control-plane', action: 'approval.timeout', target: r.id, detail: { source: r.call.source, destination: r.call.destination, tool: r.call.tool, binding: r.binding, decisionId: r.decisionId } }),
    });
    const grpc: RunningGrpcServer = await startGrpcServer({
      address: config.grpcListen,
      limits: { maxConnections: config.maxConnections, tlsHandshakeTimeoutMs: config.tlsHandshakeTimeout, maxConcurrentStreams: config.grpcMaxConcurrentStreams, maxConnectionsPerClient: config.grpcMaxConnectionsPerClient },
      refusedConnection: (reason) => metrics.connectionsRefused.inc({ listener: 'grpc', reason }),
      certificates,
      tlsMinVersion: config.tlsMinVersion,
      caIssuers: () => ring.verifiers(),
      trustDomain: config.trustDomain,
      authorizer: new Authorizer({ trustDomain: config.trustDomain, decisions: () => decisions.current(), metrics, audit: recentDecisions.tee(audit), tickets: new TicketIssuer(ticketKeys, config.ticketTtl), toolPins, approvals, baselines }),
      issuer: new CertificateIssuer({ ca: ring, joinTokens, store, agents, revocations, quarantines, ...(kubernetes === undefined ? {} : { kubernetes: kubernetes.attestor }), svidTtlMs: config.svidTtl, metrics, logger: logger.child({ component: 'identity' }), audit: refusals }),
      revocations,
      ticketKeys,
      quarantines,
      mcpBody: new McpBodyScopes(decisions),
      logger: logger.child({ component: 'grpc' }),
      refusals,
      metrics,
      ...(opts.authorizeStreamLimits === undefined ? {} : { authorizeStreamLimits: opts.authorizeStreamLimits }),
      admin: { store, policies, decisions, limits },
      notReadyReason,
      reflection: config.grpcReflection === 'on',
    });
    cleanups.push(() => grpc.close());

    const adminApi = await startAdminApiServer({
      address: config.adminListen,
      transport: config.adminTransport,
      tlsMinVersion: config.tlsMinVersion,
      certificates,
      limits: listenerLimits,
      refused: (reason) => metrics.connectionsRefused.inc({ listener: 'admin', reason }),
      routes: [
        serveEndpoints(
          [
            ...joinTokenEndpoints({ store, joinTokens, audit }),
            ...caEndpoints({ store, ring, audit }),
            ...adminCertEndpoints({ store, ring, audit }),
            ...policyEndpoints({ store, policies, audit, limits, decisions, trustDomain: config.trustDomain }),
            ...revokeEndpoints({ trustDomain: config.trustDomain, revocations, metrics, audit }),
            ...quarantineEndpoints({ trustDomain: config.trustDomain, quarantines, incidents, decisions, store, audit }),
            ...toolPinEndpoints({ toolPins, store, audit }),
            ...approvalEndpoints({ approvals, store, audit }),
            ...threatFeedEndpoints({ policies, threatFeeds }),
            ...baselineEndpoints({ trustDomain: config.trustDomain, baselines, store, audit }),
          ],
          requireRole,
        ),
      ],
    });
    cleanups.push(() => adminApi.close());
    if (config.adminTransport === 'http-insecure') {
      log.warn({ adminListen: config.adminListen }, 'the admin API is served as plain HTTP (adminTransport http-insecure): its bearer tokens cross the network in clear text');
    }

    // Prometheus and kubelet probes need no TLS: this listener serves only /metrics, /healthz, /readyz.
    const http: Server = await startAdminServer(
      config.httpListen,
      registry,
      { healthy: () => true, notReadyReason },
      [adminApiElsewhereRoute(adminApi)],
      { limits: listenerLimits, refused: (reason) => metrics.connectionsRefused.inc({ listener: 'http', reason }) },
    );
    answerClientErrors(http);
    cleanups.push(() => closeServer(http));
    const webhook = await startInjection({ config, settings: injection, serving: certificates, tlsMinVersion: config.tlsMinVersion, trustBundlePem: () => ring.bundlePem(), registry, refused: (reason) => metrics.connectionsRefused.inc({ listener: 'webhook', reason }), logger: logger.child({ component: 'injection' }) });
    if (webhook !== undefined) cleanups.push(() => webhook.close());

    ready = true;
    const httpPort = boundPort(http);
    const adminUrl = `${adminApi.scheme}://${localAddressOf(config.adminListen, adminApi.port)}`;
    log.info({ grpcPort: grpc.port, httpPort, adminPort: adminApi.port, adminTransport: config.adminTransport, injectionPort: webhook?.port, trustDomain: config.trustDomain, spiffeId: selfId }, 'control plane ready');
    return { grpcPort: grpc.port, httpPort, adminPort: adminApi.port, adminUrl, injectionPort: webhook?.port, trustBundlePem: ring.bundlePem(), trustBundle: () => ring.bundlePem(), adminToken, close: closeAll };
  } catch (err) {
    await closeAll();
    if (err instanceof AirlockError) throw err;
    throw new AirlockError(ErrorCode.Internal, `control plane failed to start: ${errorMessage(err)}`, { cause: err });
  }
}
