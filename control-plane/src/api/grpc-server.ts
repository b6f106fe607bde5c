import type { TLSSocket } from 'node:tls';
import {
  Server,
  type ServiceDefinition,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { DEFAULT_TLS_MIN_VERSION, formatHostPort, type ListenAddress, type TlsMinVersion } from '@airlock/common/config';
import { DEFAULT_LISTENER_LIMITS, type LimitRefusal, type ListenerLimits } from '@airlock/common/listener-limits';
import type { SpiffeId } from '@airlock/common/spiffe';
import { AuthorizationService } from '@airlock/proto/authorization/v1/stream';
import { AuthorizationServiceService, type AuthorizeRequest, type AuthorizeResponse, type AuthorizeStreamRequest, type AuthorizeStreamResponse } from '@airlock/proto/authorization/v1';
import { AdminServiceService } from '@airlock/proto/admin/v1';
import { IdentityServiceService, type SignCertificateRequest, type SignCertificateResponse } from '@airlock/proto/identity/v1';
import type { Authorizer } from '../authz/authorize.ts';
import { verifyPeer, verifyPeerCertificate, type PeerIssuers, type VerifiedPeer } from './peer.ts';
import { adminServiceImplementation, type AdminGrpcDeps } from './admin/admin-grpc.ts';
import { serveAuthorizeStream, type AuthorizeStreamLimits } from './authorization/authorize-stream.ts';
import type { CertificateIssuer } from './identity/sign-certificate.ts';
import type { Revocations } from '../ca/revocations.ts';
import type { ControlPlaneMetrics } from '../monitoring/metrics.ts';
import type { StaticCertificateProvider } from './certificate-provider.ts';
import { capGrpcConnections } from './grpc-listener-limits.ts';
import { providerServerCredentials } from './grpc-server-credentials.ts';
import { toGrpcFailure } from './grpc-status.ts';
import type { RefusalLog } from './rate-limit.ts';
import { watchTrustBundleHandler, type McpBodySource, type QuarantineSource, type TicketKeySource } from './identity/trust-bundle-stream.ts';
import { addHealthService, addReflectionService, serviceName } from './grpc-standard-services.ts';

export interface GrpcServerDeps {
  readonly address: ListenAddress;
  /** Connection cap, TLS handshake timeout and streams per connection (default DEFAULT_GRPC_LIMITS). */
  readonly limits?: GrpcListenerLimits;
  /** Each connection the limits cut (to count it). */
  readonly refusedConnection?: (reason: LimitRefusal) => void;
  readonly certificates: StaticCertificateProvider;
  /** Lowest TLS version a caller may speak (setting tlsMinVersion; default TLS 1.3). */
  readonly tlsMinVersion?: TlsMinVersion;
  /** The CAs whose certificates callers may present (read per call: a root rollover changes them). */
  readonly caIssuers: () => PeerIssuers;
  readonly trustDomain: string;
  readonly authorizer: Authorizer;
  readonly issuer: CertificateIssuer;
  readonly revocations: Revocations;
  /** Each sidecar's own ticket keys, pushed on its WatchTrustBundle stream; absent: none. */
  readonly ticketKeys?: TicketKeySource;
  /** Quarantined identities, pushed on the same stream: a sidecar admits no ticket from them. */
  readonly quarantines?: QuarantineSource;
  /** Which destinations need the MCP body read, pushed on the same stream (authz/mcp-body.ts); absent: sidecars read every body. */
  readonly mcpBody?: McpBodySource;
  readonly logger: Logger;
  /** Where refused unauthenticated calls and throttled streams are recorded, at a bounded rate (refusalLog of the audit trail). */
  readonly refusals: RefusalLog;
  /** Counts Authorize calls and streams refused for want of a client certificate. */
  readonly metrics?: Pick<ControlPlaneMetrics, 'refused'>;
  /** Bounds on each AuthorizeStream (default DEFAULT_AUTHORIZE_STREAM_LIMITS). */
  readonly authorizeStreamLimits?: AuthorizeStreamLimits;
  /** The policy admin service (airlock.admin.v1.AdminService); absent, it is not served. */
  readonly admin?: Omit<AdminGrpcDeps, 'caIssuers' | 'trustDomain'>;
  /** Why this replica is not ready (as /readyz says), or undefined: grpc.health.v1.Health answers NOT_SERVING or SERVING. */
  readonly notReadyReason?: () => string | undefined;
  /** Serve gRPC server reflection (setting grpcReflection; default off). */
  readonly reflection?: boolean;
}

export interface GrpcListenerLimits extends Pick<ListenerLimits, 'maxConnections' | 'tlsHandshakeTimeoutMs'> {
  readonly maxConcurrentStreams: number;
  /** Connections one client (a verified SPIFFE ID, else an address) holds at once. */
  readonly maxConnectionsPerClient: number;
}

export const DEFAULT_GRPC_LIMITS: GrpcListenerLimits = { maxConnections: DEFAULT_LISTENER_LIMITS.maxConnections, tlsHandshakeTimeoutMs: DEFAULT_LISTENER_LIMITS.tlsHandshakeTimeoutMs, maxConcurrentStreams: 128, maxConnectionsPerClient: 64 };

export interface RunningGrpcServer {
  readonly port: number;
  close(): Promise<void>;
}

/** The caller's identity from the TLS handshake, or why there is none. */
function callerOf(call: Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext'>, deps: GrpcServerDeps): SpiffeId | AirlockError {
  try {
    return verifyPeerCertificate(call.getAuthContext().sslPeerCertificate?.raw, deps.caIssuers(), deps.trustDomain);
  } catch (err) {
    return err instanceof AirlockError ? err : new AirlockError(ErrorCode.Unauthenticated, 'the client certificate cannot be verified');
  }
}

/**
 * Whom a connection's share of the listener is counted against: one pod — its verified SPIFFE ID and
 * address (the replicas of one service account share an ID, never a pod IP) — else its address alone
 * (a join, an admin certificate, a forged one).
 */
function clientOf(socket: TLSSocket, deps: GrpcServerDeps): string {
  const der = socket.getPeerCertificate().raw as Buffer | undefined;
  if (der !== undefined) {
    try {
      return `${verifyPeerCertificate(der, deps.caIssuers(), deps.trustDomain).uri} at ${socket.remoteAddress ?? ''}`;
    } catch {
      // not one of our SVIDs: counted by address
    }
  }
  return `address ${socket.remoteAddress ?? ''}`;
}

/** callerOf for a stream: verified once when it opens, with the expiry the stream re-checks. */
function streamCallerOf(call: ServerDuplexStream<unknown, unknown>, deps: GrpcServerDeps): VerifiedPeer | AirlockError {
  try {
    return verifyPeer(call.getAuthContext().sslPeerCertificate?.raw, deps.caIssuers(), deps.trustDomain);
  } catch (err) {
    return err instanceof AirlockError ? err : new AirlockError(ErrorCode.Unauthenticated, 'the client certificate cannot be verified');
  }
}

/** Runs a handler and sends its result or its mapped status; internals are logged, not sent. */
function unary<Req, Res>(deps: GrpcServerDeps, fn: (call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    const fail = (err: unknown): void => {
      const failure = toGrpcFailure(err);
      if (!(err instanceof AirlockError)) deps.logger.error({ err, path: call.getPath() }, 'internal error in gRPC handler');
      callback({ code: failure.code, details: failure.details });
    };
    let result: Res | Promise<Res>;
    try {
      result = fn(call);
    } catch (err) {
      fail(err);
      return;
    }
    // Authorize stays synchronous (hot path); SignCertificate may await a TokenReview.
    if (result instanceof Promise) result.then((r) => callback(null, r), fail);
    else callback(null, result);
  };
}

/** gRPC over TLS (1.3 unless set otherwise) that asks for a client certificate but does not require one (see StaticCertificateProvider). */
export async function startGrpcServer(deps: GrpcServerDeps): Promise<RunningGrpcServer> {
  const limits = deps.limits ?? DEFAULT_GRPC_LIMITS;
  // Past the streams a connection may open, the client's HTTP/2 layer waits: memory per connection is bounded.
  const server = new Server({ 'grpc.max_concurrent_streams': limits.maxConcurrentStreams });
  capGrpcConnections(server, { maxConnections: limits.maxConnections, maxConnectionsPerClient: limits.maxConnectionsPerClient, clientOf: (socket) => clientOf(socket, deps) }, deps.refusedConnection ?? (() => undefined));
  const warnings = deps.refusals;
  // A caller without a valid client certificate is refused before any work on its request, and
  // what it makes us write is bounded: it could otherwise flood the audit trail at will.
  const refuseUnauthenticated = (rpc: string, peer: string, err: AirlockError): AirlockError => {
    if (rpc !== 'WatchTrustBundle') deps.metrics?.refused.inc({ reason: 'unauthenticated' });
    warnings.refusal({ operation: rpc, reasonCode: 'unauthenticated', reason: err.message, peer });
    return err;
  };
  const authorization: UntypedServiceImplementation = {
    authorize: unary<AuthorizeRequest, AuthorizeResponse>(deps, (call) => {
      const caller = callerOf(call, deps);
      if (caller instanceof AirlockError) throw refuseUnauthenticated('Authorize', call.getPeer(), caller);
      // A held call's wait (approval_id) answers when its approval is decided or times out.
      return call.request.approvalId === '' ? deps.authorizer.authorize(caller, call.request) : deps.authorizer.authorizeHeld(caller, call.request);
    }),
    authorizeStream: (call: ServerDuplexStream<AuthorizeStreamRequest, AuthorizeStreamResponse>) => {
      const caller = streamCallerOf(call, deps);
      if (caller instanceof AirlockError) {
        // Ended at once: a stream open without an identity would be a channel for refusals.
        const failure = toGrpcFailure(refuseUnauthenticated('AuthorizeStream', call.getPeer(), caller));
        call.emit('error', { code: failure.code, details: failure.details });
        return;
      }
      serveAuthorizeStream(call, {
        authorizer: deps.authorizer,
        logger: deps.logger,
        warnings,
        caller,
        issuers: deps.caIssuers,
        ...(deps.authorizeStreamLimits === undefined ? {} : { limits: deps.authorizeStreamLimits }),
      });
    },
  };
  const identity: UntypedServiceImplementation = {
    signCertificate: unary<SignCertificateRequest, SignCertificateResponse>(deps, (call) => {
      const caller = callerOf(call, deps);
      return deps.issuer.signCertificate(caller instanceof AirlockError ? undefined : caller, call.request);
    }),
    watchTrustBundle: watchTrustBundleHandler({
      revocations: deps.revocations,
      ...(deps.ticketKeys === undefined ? {} : { ticketKeys: deps.ticketKeys }),
      ...(deps.quarantines === undefined ? {} : { quarantines: deps.quarantines }),
      ...(deps.mcpBody === undefined ? {} : { mcpBody: deps.mcpBody }),
      callerOf: (call) => {
        const caller = callerOf(call, deps);
        return caller instanceof AirlockError ? refuseUnauthenticated('WatchTrustBundle', call.getPeer(), caller) : caller;
      },
      logger: deps.logger,
    }),
  };
  server.addService(AuthorizationService, authorization);
  server.addService(IdentityServiceService, identity);
  const served: ServiceDefinition[] = [AuthorizationServiceService, IdentityServiceService];
  const protoFiles = ['airlock/authorization/v1/authorization.proto', 'airlock/identity/v1/identity.proto'];
  if (deps.admin !== undefined) {
    const admin = { ...deps.admin, caIssuers: deps.caIssuers, trustDomain: deps.trustDomain };
    server.addService(AdminServiceService, adminServiceImplementation(admin, (fn) => unary(deps, fn)));
    served.push(AdminServiceService);
    protoFiles.push('airlock/admin/v1/admin.proto');
  }
  // Standard services, callable like SignCertificate without a client certificate (none is required on this port).
  const stopHealth = addHealthService(server, served.map(serviceName), deps.notReadyReason ?? (() => undefined));
  if (deps.reflection === true) addReflectionService(server, protoFiles);
  const credentials = providerServerCredentials(deps.certificates, deps.tlsMinVersion ?? DEFAULT_TLS_MIN_VERSION, limits.tlsHandshakeTimeoutMs);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(formatHostPort(deps.address), credentials, (err, bound) => {
      if (err !== null) reject(new AirlockError(ErrorCode.Config, `cannot listen on ${formatHostPort(deps.address)}: ${err.message}`, { cause: err }));
      else resolve(bound);
    });
  });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        stopHealth();
        // Give in-flight calls a moment, then cut: a sidecar retries on another replica.
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
