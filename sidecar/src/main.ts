import { rootCertificates } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { Pool } from 'undici';
import { formatHostPort } from '@airlock/common/config';
import { ConfigError, errorMessage } from '@airlock/common/errors';
import { createRootLogger, type Logger } from '@airlock/common/logging';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { createRegistry } from '@airlock/common/telemetry';
import { startSidecarAdmin } from './admin/admin-server.ts';
import type { Authorizer } from './authz/authorizer.ts';
import { createAuthorizer } from './authz/create-authorizer.ts';
import { withAuthzMetrics } from './authz/timed-authorizer.ts';
import { withApprovals } from './authz/approval-wait.ts';
import type { SidecarConfig } from './config/config.ts';
import { ControlPlanePool } from './controlplane/control-plane-pool.ts';
import { controlPlaneId } from './controlplane/credentials.ts';
import { ControlPlaneEndpoints } from './controlplane/endpoints.ts';
import { JoinTokenSigner, KubernetesTokenSigner, MtlsRenewalSigner } from './identity/certificate-signer.ts';
import { IdentityProvider } from './identity/identity-provider.ts';
import { TrustBundleWatcher } from './identity/trust-bundle-watcher.ts';
import { McpBodyNeeds } from './mcp/mcp-body-scope.ts';
import type { ListenerLimits } from './http/listener-limits.ts';
import { createInboundServer } from './inbound/inbound-server.ts';
import { TicketCheck } from './inbound/ticket-check.ts';
import { createCaptureServer } from './outbound/capture-server.ts';
import { createOutboundServer } from './outbound/outbound-server.ts';
import { DestinationCheck, dnsServersResolve, externalAgent } from './outbound/destination-check.ts';
import { EgressCa } from './outbound/egress-ca.ts';
import type { OriginationTrust } from './outbound/tls-origination.ts';
import { DEFAULT_MAX_UPSTREAM_POOLS, UpstreamPools } from './outbound/upstream-pools.ts';
import type { UpstreamTimeouts } from './outbound/upstream-timeouts.ts';
import { createSidecarMetrics, mcpBodyCounter } from './telemetry/metrics.ts';

export type { SidecarConfig } from './config/config.ts';

export interface RunningSidecar {
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly adminPort: number;
  /** The capture listener's port (transparent mode), when captureListen is set. */
  readonly capturePort: number | undefined;
  /** Our SPIFFE ID once an SVID is held. */
  spiffeId(): string | undefined;
  close(): Promise<void>;
}

/**
 * Starts the sidecar: the three listeners at once (answering 503 not_ready until an SVID is held),
 * then the SVID is obtained in the background with retries.
 */
export interface StartSidecarOptions {
  readonly logger?: Logger;
  /**
   * Replaces the control-plane authorizer: for benchmarks that measure the proxy with authorization
   * stubbed in-process. Deliberately not a setting: a deployed sidecar always asks the control plane.
   */
  readonly authorizer?: Authorizer;
  /**
   * False: the ingress asks the control plane for every call, ticket or not. For benchmarks that
   * measure what admitting on a ticket saves; deliberately not a setting.
   */
  readonly ticketAdmission?: false;
}

export async function startSidecar(config: SidecarConfig, opts: StartSidecarOptions = {}): Promise<RunningSidecar> {
  if (config.joinToken === undefined && config.kubernetesTokenFile === undefined) {
    throw new ConfigError(['joinToken is required to obtain a first certificate (env AIRLOCK_JOIN_TOKEN or --join-token; create one with `airlock token create`), or kubernetesTokenFile in a Kubernetes pod']);
  }
  const caPem = await trustBundle(config);
  const logger = opts.logger ?? createRootLogger({ process: 'sidecar', level: config.logLevel });
  const registry = createRegistry('sidecar');
  const metrics = createSidecarMetrics(registry);
  const egressRoots = await egressTrust(config);
  // tls: inspect: made at every start (its key only in memory), its certificate written for the agent.
  const egressCa = await EgressCa.create({
    ...(config.egressCaFile === undefined ? {} : { certFile: config.egressCaFile }),
    ...(config.egressCaBundleFile === undefined ? {} : { bundleFile: config.egressCaBundleFile, roots: egressRoots.ca ?? rootCertificates.join('\n') }),
    minted: metrics.egressCertificatesMinted,
  });
  const cpId = controlPlaneId(config);
  // Every client of the control plane (authorization, signing, the trust-bundle stream) goes through one pool: one health record, one failover rule.
  const endpoints = new ControlPlaneEndpoints({ configured: config.controlPlane, refreshMs: config.controlPlaneResolveInterval, logger: logger.child({ component: 'control-plane-endpoints' }) });
  const pool = new ControlPlanePool({ endpoints, logger: logger.child({ component: 'control-plane-endpoints' }), metrics: { endpointUp: metrics.controlPlaneEndpointUp, failovers: metrics.controlPlaneFailovers } });
  const cp = { endpoints, pool, controlPlaneId: cpId };
  // Every TLS connection of ours, in and out, speaks at least this (TLS 1.3 unless set for interop).
  const tlsMinVersion = config.tlsMinVersion;

  let inboundAddress = '';
  const identity = new IdentityProvider({
    signer:
      config.joinToken !== undefined
        ? new JoinTokenSigner({ ...cp, caPem, tlsMinVersion, joinToken: config.joinToken })
        : new KubernetesTokenSigner({ ...cp, caPem, tlsMinVersion, tokenFile: config.kubernetesTokenFile ?? '' }),
    inboundAddress: () => inboundAddress,
    expiryGauge: metrics.certificateExpiry,
    logger: logger.child({ component: 'identity' }),
    renewer: new MtlsRenewalSigner({ ...cp, tlsMinVersion }),
    renewals: metrics.renewals,
    renewalFailures: metrics.renewalFailures,
    bundleGauge: metrics.trustBundleCertificates,
    keyType: config.keyType,
  });
  // Which destinations' bodies are read for MCP, as the control plane pushes it (every body until then).
  const mcpBody = new McpBodyNeeds();
  metrics.mcpBodyScopeVersion.set(-1);
  const revoked = new TrustBundleWatcher({
    pool,
    controlPlaneId: cpId,
    tlsMinVersion,
    identity,
    logger: logger.child({ component: 'trust-bundle' }),
    revokedGauge: metrics.revokedSerials,
    ticketKeyGauge: metrics.ticketKeyId,
    containedGauge: metrics.containedIdentities,
    // The pushed bundle replaces the one we hold everywhere (root rollover); a hint may ask to renew now.
    onBundle: (pushed) => {
      identity.useTrustBundle(pushed.trustBundlePem);
      identity.renewUnlessIssuedBy(pushed.renewUnlessIssuedByPem);
    },
    onMcpBody: (scope) => {
      mcpBody.update(scope);
      metrics.mcpBodyScopeVersion.set(scope?.policyVersion ?? -1);
    },
  });
  const authorizer = withApprovals(
    withAuthzMetrics(
      opts.authorizer ?? createAuthorizer(config.authzTransport, { ...cp, tlsMinVersion, identity, timeoutMs: config.authzTimeout, onBatch: (n) => metrics.authzBatchChecks.observe(n) }),
      metrics.authzDuration,
    ),
    config.authzTimeout,
  );
  const upstreamTimeouts: UpstreamTimeouts = { connectMs: config.upstreamConnectTimeout, headersMs: config.upstreamHeadersTimeout, bodyMs: config.upstreamBodyTimeout };
  const meshPools = new UpstreamPools(tlsMinVersion, DEFAULT_MAX_UPSTREAM_POOLS, upstreamTimeouts);
  const app = new Pool(`http://127.0.0.1:${config.appPort}`);

  // Tickets are checked against our own keys and the revocations the trust-bundle stream pushes.
  const tickets = opts.ticketAdmission === false ? undefined : { checker: new TicketCheck(revoked), instance: () => inboundAddress };
  const limits: ListenerLimits = {
    maxConnections: config.maxConnections,
    headersTimeoutMs: config.headersTimeout,
    requestTimeoutMs: config.requestTimeout,
    tlsHandshakeTimeoutMs: config.tlsHandshakeTimeout,
    tunnelIdleTimeoutMs: config.tunnelIdleTimeout,
  };
  const inbound = createInboundServer({ identity, authorizer, app, metrics, revoked, contained: revoked, ...(tickets === undefined ? {} : { tickets }), mcpMaxBody: config.mcpMaxBody, mcpBody, mcpBodies: mcpBodyCounter(metrics, 'inbound'), tlsMinVersion, limits, logger: logger.child({ component: 'inbound' }) });
  // Our own listeners, once bound: an external call is never let back into the sidecar (or the control plane).
  const ownPorts: number[] = [];
  const destinations = new DestinationCheck({
    forbidCidrs: config.egressForbidCidrs,
    allowCidrs: config.egressAllowCidrs,
    ownPorts: () => ownPorts,
    controlPlane: () => endpoints.current(),
    ...(config.egressDnsServers.length === 0 ? {} : { resolve: dnsServersResolve(config.egressDnsServers) }),
    connectTimeoutMs: upstreamTimeouts.connectMs,
  });
  const external = externalAgent(destinations, logger.child({ component: 'outbound' }), egressRoots, upstreamTimeouts);
  const outboundDeps = { identity, authorizer, meshPools, external, destinations, metrics, mcpMaxBody: config.mcpMaxBody, mcpBody, mcpBodies: mcpBodyCounter(metrics, 'outbound'), plainHttpPorts: new Set(config.plainHttpPorts), egressCa, limits, logger: logger.child({ component: 'outbound' }) };
  const outbound = createOutboundServer(outboundDeps);
  const capture = config.captureListen === undefined ? undefined : createCaptureServer(outboundDeps);
  const started: import('node:net').Server[] = [];
  try {
    await listen(inbound, config.inboundListen);
    started.push(inbound);
    await listen(outbound, config.outboundListen);
    started.push(outbound);
    started.push(await startSidecarAdmin(config.adminListen, registry, () => identity.notReadyReason(), { limits, refused: (reason) => metrics.connectionsRefused.inc({ listener: 'admin', reason }) }));
    if (capture !== undefined && config.captureListen !== undefined) {
      await listen(capture, config.captureListen);
      started.push(capture);
    }
  } catch (err) {
    await Promise.all(started.map((s) => closeServer(s)));
    identity.close();
    revoked.close();
    pool.close();
    endpoints.close();
    throw err;
  }
  ownPorts.push(...started.map((s) => boundPort(s)));
  const admin = started[2];
  const inboundPort = boundPort(inbound);
  const adminPort = admin === undefined ? 0 : boundPort(admin);
  inboundAddress = advertisedInboundAddress(config, inboundPort);
  // Names resolved before the first request; one that does not resolve yet is dialled as a name.
  await endpoints.start();
  identity.start();
  revoked.start();
  // The bound ports, so a supervisor that passed port 0 learns them from this line.
  const capturePort = capture === undefined ? undefined : boundPort(capture);
  logger.info({ outbound: boundPort(outbound), inbound: inboundPort, admin: adminPort, capture: capturePort, inboundAddress, controlPlane: endpoints.current() }, 'sidecar listening; obtaining an SVID');

  return {
    outboundPort: boundPort(outbound),
    inboundPort,
    adminPort,
    capturePort,
    spiffeId: () => identity.current()?.spiffeId,
    async close() {
      identity.close();
      revoked.close();
      authorizer.close();
      pool.close();
      endpoints.close();
      await Promise.all(started.map((s) => closeServer(s)));
      await Promise.all([meshPools.close(), external.destroy(), app.destroy()]);
    },
  };
}

/** The PEM the control plane is first verified with: caPem (injected pods) or the contents of caFile. */
/** What the certificates of external hosts are verified against (tls: inspect, originate). */
async function egressTrust(config: Pick<SidecarConfig, 'egressTrustBundleFile'>): Promise<OriginationTrust> {
  const file = config.egressTrustBundleFile;
  if (file === undefined) return { describe: "Node's root certificates" };
  let ca: string;
  try {
    ca = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`egressTrustBundleFile: cannot read ${file}: ${errorMessage(err)}`]);
  }
  if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError([`egressTrustBundleFile: ${file} holds no PEM certificate`]);
  return { ca, describe: `egressTrustBundleFile (${file})` };
}

async function trustBundle(config: Pick<SidecarConfig, 'caFile' | 'caPem'>): Promise<string> {
  if (config.caPem !== undefined && config.caFile !== undefined) throw new ConfigError(['caFile and caPem are two ways to give one trust bundle: give one']);
  if (config.caPem !== undefined) {
    if (!config.caPem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(['caPem: holds no PEM certificate']);
    return config.caPem;
  }
  if (config.caFile === undefined) throw new ConfigError(['caFile (or caPem) is required: the PEM trust bundle that verifies the control plane']);
  try {
    return await readFile(config.caFile, 'utf8');
  } catch (err) {
    throw new ConfigError([`caFile: cannot read ${config.caFile}: ${errorMessage(err)}`]);
  }
}

/** Where peers reach us: `inboundAdvertise`, else loopback when listening on a wildcard or loopback address. */
export function advertisedInboundAddress(config: Pick<SidecarConfig, 'inboundAdvertise' | 'inboundListen'>, port: number): string {
  if (config.inboundAdvertise !== undefined) return config.inboundAdvertise;
  const host = config.inboundListen.host;
  if (host === '0.0.0.0' || host === '127.0.0.1' || host === '::' || host === '') return `127.0.0.1:${port}`;
  return formatHostPort({ host, port });
}
