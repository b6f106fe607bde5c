import type { Server } from 'node:http';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { createRootLogger, type Logger } from '@airlock/common/logging';
import { closeServer, boundPort } from '@airlock/common/net';
import { formatSpiffeId } from '@airlock/common/spiffe';
import { createRegistry, startAdminServer } from '@airlock/common/telemetry';
import type { Registry } from 'prom-client';
import { joinTokenRoute } from './api/admin-routes.ts';
import { StaticCertificateProvider } from './api/certificate-provider.ts';
import { startGrpcServer, type RunningGrpcServer } from './api/grpc-server.ts';
import { ensureAdminToken } from './attestation/admin-token.ts';
import { JoinTokens } from './attestation/join-tokens.ts';
import { Authorizer } from './authz/authorize.ts';
import { CertificateIssuer } from './authz/sign-certificate.ts';
import { CertificateAuthority } from './ca/ca.ts';
import type { ControlPlaneConfig } from './config/config.ts';
import { createControlPlaneMetrics } from './monitoring/metrics.ts';
import { PolicyEngine } from './policy/engine.ts';
import { loadPolicyFile } from './policy/load.ts';
import { SqliteStore } from './store/sqlite-store.ts';

export type { ControlPlaneConfig } from './config/config.ts';

/** Lifetime of the control plane's own serving certificate; it is reissued at half life. */
const SERVING_CERT_TTL_MS = 24 * 3_600_000;

export interface RunningControlPlane {
  /** The bound ports (tests listen on port 0). */
  readonly grpcPort: number;
  readonly httpPort: number;
  /** PEM of the root CA: what sidecars are given as `--ca-file`. */
  readonly trustBundlePem: string;
  /** The admin bearer token (contents of `<dataDir>/admin-token`). */
  readonly adminToken: string;
  close(): Promise<void>;
}

export interface StartOptions {
  readonly logger?: Logger;
  readonly registry?: Registry;
}

/**
 * Audit lines are the security record, not diagnostics: they are written at any log level
 * (`logLevel: warn` quiets the control plane's chatter, never its decisions).
 */
function auditLogger(logger: Logger): Logger {
  return logger.child({ component: 'audit' }, { level: 'info' });
}

/** The SPIFFE ID the control plane serves as; sidecars check it instead of a host name. */
export function controlPlaneSpiffeId(trustDomain: string): string {
  return formatSpiffeId(trustDomain, 'airlock-system', 'airlock-control-plane');
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
  const policy = config.policyFile === undefined ? PolicyEngine.empty(config.trustDomain) : new PolicyEngine(loadPolicyFile(config.policyFile), config.trustDomain);
  if (config.policyFile === undefined) log.warn('no policy file: every call will be denied');

  const store = SqliteStore.open(config.dataDir);
  const cleanups: (() => Promise<void> | void)[] = [() => store.close()];
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
    const ca = CertificateAuthority.loadOrCreate(config.dataDir, config.trustDomain);
    const adminToken = ensureAdminToken(config.dataDir, store);
    const joinTokens = new JoinTokens(store, config.trustDomain);
    const selfId = controlPlaneSpiffeId(config.trustDomain);
    const serving = ca.issueServingCertificate(selfId, SERVING_CERT_TTL_MS);
    const certificates = new StaticCertificateProvider(ca.certPem, serving.certPem, serving.keyPem);
    const renew = setInterval(() => {
      try {
        const next = ca.issueServingCertificate(selfId, SERVING_CERT_TTL_MS);
        certificates.update({ certPem: next.certPem, keyPem: next.keyPem });
        log.info({ notAfter: next.notAfter.toISOString() }, 'serving certificate renewed');
      } catch (err) {
        log.error({ error: errorMessage(err) }, 'serving certificate renewal failed');
      }
    }, SERVING_CERT_TTL_MS / 2);
    renew.unref();
    cleanups.push(() => clearInterval(renew));

    const grpc: RunningGrpcServer = await startGrpcServer({
      address: config.grpcListen,
      certificates,
      caPublicKey: () => ca.publicKey,
      trustDomain: config.trustDomain,
      authorizer: new Authorizer({ trustDomain: config.trustDomain, store, policy: () => policy, metrics, audit: auditLogger(logger) }),
      issuer: new CertificateIssuer({ ca, joinTokens, store, svidTtlMs: config.svidTtl, metrics, logger: logger.child({ component: 'identity' }) }),
      logger: logger.child({ component: 'grpc' }),
    });
    cleanups.push(() => grpc.close());

    const http: Server = await startAdminServer(
      config.httpListen,
      registry,
      { healthy: () => true, notReadyReason: () => (ready ? undefined : 'starting') },
      [joinTokenRoute({ store, joinTokens, logger: logger.child({ component: 'admin-api' }) })],
    );
    cleanups.push(() => closeServer(http));

    ready = true;
    const httpPort = boundPort(http);
    log.info({ grpcPort: grpc.port, httpPort, trustDomain: config.trustDomain, spiffeId: selfId }, 'control plane ready');
    return { grpcPort: grpc.port, httpPort, trustBundlePem: ca.certPem, adminToken, close: closeAll };
  } catch (err) {
    await closeAll();
    if (err instanceof AirlockError) throw err;
    throw new AirlockError(ErrorCode.Internal, `control plane failed to start: ${errorMessage(err)}`, { cause: err });
  }
}
