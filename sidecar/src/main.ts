import { readFile } from 'node:fs/promises';
import { Agent, Pool } from 'undici';
import { formatHostPort } from '@airlock/common/config';
import { ConfigError, errorMessage } from '@airlock/common/errors';
import { createRootLogger, type Logger } from '@airlock/common/logging';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { createRegistry } from '@airlock/common/telemetry';
import { startSidecarAdmin } from './admin/admin-server.ts';
import { GrpcUnaryAuthorizer } from './authz/grpc-unary-authorizer.ts';
import { withAuthzMetrics } from './authz/timed-authorizer.ts';
import type { SidecarConfig } from './config/config.ts';
import { controlPlaneId } from './controlplane/credentials.ts';
import { JoinTokenSigner } from './identity/certificate-signer.ts';
import { IdentityProvider } from './identity/identity-provider.ts';
import { createInboundServer } from './inbound/inbound-server.ts';
import { createOutboundServer } from './outbound/outbound-server.ts';
import { UpstreamPools } from './outbound/upstream-pools.ts';
import { createSidecarMetrics } from './telemetry/metrics.ts';

export type { SidecarConfig } from './config/config.ts';

export interface RunningSidecar {
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly adminPort: number;
  /** Our SPIFFE ID once an SVID is held. */
  spiffeId(): string | undefined;
  close(): Promise<void>;
}

/**
 * Starts the sidecar: the three listeners at once (answering 503 not_ready until an SVID is held),
 * then the SVID is obtained in the background with retries.
 */
export async function startSidecar(config: SidecarConfig, opts: { logger?: Logger } = {}): Promise<RunningSidecar> {
  if (config.joinToken === undefined) {
    throw new ConfigError(['joinToken is required to obtain a first certificate (env AIRLOCK_JOIN_TOKEN or --join-token; create one with `airlock token create`)']);
  }
  let caPem: string;
  try {
    caPem = await readFile(config.caFile, 'utf8');
  } catch (err) {
    throw new ConfigError([`caFile: cannot read ${config.caFile}: ${errorMessage(err)}`]);
  }
  const logger = opts.logger ?? createRootLogger({ process: 'sidecar', level: config.logLevel });
  const registry = createRegistry('sidecar');
  const metrics = createSidecarMetrics(registry);
  const cpAddress = formatHostPort(config.controlPlane);
  const cpId = controlPlaneId(config);

  let inboundAddress = '';
  const identity = new IdentityProvider({
    signer: new JoinTokenSigner({ address: cpAddress, caPem, controlPlaneId: cpId, joinToken: config.joinToken }),
    inboundAddress: () => inboundAddress,
    expiryGauge: metrics.certificateExpiry,
    logger: logger.child({ component: 'identity' }),
  });
  const authorizer = withAuthzMetrics(new GrpcUnaryAuthorizer({ address: cpAddress, controlPlaneId: cpId, identity, timeoutMs: config.authzTimeout }), metrics.authzDuration);
  const meshPools = new UpstreamPools();
  const external = new Agent();
  const app = new Pool(`http://127.0.0.1:${config.appPort}`);

  const inbound = createInboundServer({ identity, authorizer, app, metrics, logger: logger.child({ component: 'inbound' }) });
  const outbound = createOutboundServer({ identity, authorizer, meshPools, external, metrics, logger: logger.child({ component: 'outbound' }) });
  const started: import('node:net').Server[] = [];
  try {
    await listen(inbound, config.inboundListen);
    started.push(inbound);
    await listen(outbound, config.outboundListen);
    started.push(outbound);
    started.push(await startSidecarAdmin(config.adminListen, registry, () => identity.notReadyReason()));
  } catch (err) {
    await Promise.all(started.map((s) => closeServer(s)));
    identity.close();
    throw err;
  }
  const admin = started[2];
  const inboundPort = boundPort(inbound);
  const adminPort = admin === undefined ? 0 : boundPort(admin);
  inboundAddress = advertisedInboundAddress(config, inboundPort);
  identity.start();
  // The bound ports, so a supervisor that passed port 0 learns them from this line.
  logger.info({ outbound: boundPort(outbound), inbound: inboundPort, admin: adminPort, inboundAddress, controlPlane: cpAddress }, 'sidecar listening; obtaining an SVID');

  return {
    outboundPort: boundPort(outbound),
    inboundPort,
    adminPort,
    spiffeId: () => identity.current()?.spiffeId,
    async close() {
      identity.close();
      authorizer.close();
      await Promise.all(started.map((s) => closeServer(s)));
      await Promise.all([meshPools.close(), external.destroy(), app.destroy()]);
    },
  };
}

/** Where peers reach us: `inboundAdvertise`, else loopback when listening on a wildcard or loopback address. */
export function advertisedInboundAddress(config: Pick<SidecarConfig, 'inboundAdvertise' | 'inboundListen'>, port: number): string {
  if (config.inboundAdvertise !== undefined) return config.inboundAdvertise;
  const host = config.inboundListen.host;
  if (host === '0.0.0.0' || host === '127.0.0.1' || host === '::' || host === '') return `127.0.0.1:${port}`;
  return formatHostPort({ host, port });
}
