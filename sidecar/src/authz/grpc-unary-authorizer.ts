import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { DEFAULT_TLS_MIN_VERSION, type TlsMinVersion } from '@airlock/common/config';
import { AuthorizationServiceClient, type AuthorizeResponse } from '@airlock/proto/authorization/v1';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials } from '../controlplane/credentials.ts';
import type { Svid, SvidSource } from '../identity/svid.ts';
import type { Authorizer, AuthzRequest, Decision } from './authorizer.ts';
import { noAnswer, toDecision, toProtoRequest, unavailable } from './proto-mapping.ts';

export interface GrpcUnaryAuthorizerOptions {
  /** host:port of the control plane. */
  readonly address: string;
  readonly controlPlaneId: string;
  /** Lowest TLS version towards the control plane (setting tlsMinVersion; default TLS 1.3). */
  readonly tlsMinVersion?: TlsMinVersion;
  readonly identity: SvidSource;
  /** Per-call deadline: no answer in time means 503 (fail closed). */
  readonly timeoutMs: number;
}

/**
 * One unary Authorize per call, over mTLS with our SVID. Nothing is cached. Any failure (no SVID,
 * transport error, deadline, an answer without a verdict) is AIRLOCK_AUTHZ_UNAVAILABLE.
 */
export class GrpcUnaryAuthorizer implements Authorizer {
  readonly #o: GrpcUnaryAuthorizerOptions;
  #client: AuthorizationServiceClient | undefined;
  #clientSvid: Svid | undefined;

  constructor(o: GrpcUnaryAuthorizerOptions) {
    this.#o = o;
  }

  authorize(request: AuthzRequest, timeoutMs = this.#o.timeoutMs): Promise<Decision> {
    const client = this.#clientForCurrentSvid();
    if (client === undefined) return Promise.reject(unavailable('no SVID yet'));
    return new Promise((resolve, reject) => {
      client.authorize(
        toProtoRequest(request),
        new Metadata(),
        { deadline: Date.now() + timeoutMs },
        (err: ServiceError | null, res: AuthorizeResponse) => {
          if (err !== null) {
            // Unreachable or too late: no answer (worth another replica); any other status is the control plane's answer.
            const failure = err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED ? noAnswer : unavailable;
            reject(failure(describeFailure(err, timeoutMs), err));
            return;
          }
          const decision = toDecision(res);
          // An answer we do not understand is no decision: fail closed.
          if (decision === undefined) reject(unavailable(`control plane sent verdict ${res.verdict}`));
          else resolve(decision);
        },
      );
    });
  }

  close(): void {
    this.#client?.close();
    this.#client = undefined;
  }

  /** A channel per SVID: a renewed certificate needs new credentials; the old channel is closed. */
  #clientForCurrentSvid(): AuthorizationServiceClient | undefined {
    const svid = this.#o.identity.current();
    if (svid === undefined) return undefined;
    if (this.#client === undefined || this.#clientSvid !== svid) {
      this.#client?.close();
      this.#client = new AuthorizationServiceClient(
        this.#o.address,
        controlPlaneCredentials(svid.trustBundlePem, this.#o.controlPlaneId, this.#o.tlsMinVersion ?? DEFAULT_TLS_MIN_VERSION, svid),
        CONTROL_PLANE_CHANNEL_OPTIONS,
      );
      this.#clientSvid = svid;
    }
    return this.#client;
  }
}

/** A reason the agent can read; grpc-js details (LB picks, resolver timings) stay in the cause. */
export function describeFailure(err: ServiceError, timeoutMs: number): string {
  if (err.code === status.DEADLINE_EXCEEDED) return `no decision from the control plane within ${timeoutMs} ms`;
  if (err.code === status.UNAVAILABLE) return 'the control plane is unreachable';
  return `the control plane failed the request (${status[err.code]}): ${err.details}`;
}
