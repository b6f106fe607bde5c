import { Metadata, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { IdentityServiceClient, type SignCertificateResponse } from '@airlock/proto/identity/v1';
import { readFile } from 'node:fs/promises';
import { DEFAULT_TLS_MIN_VERSION, type TlsMinVersion } from '@airlock/common/config';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { PerEndpoint, type ControlPlanePool } from '../controlplane/control-plane-pool.ts';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials } from '../controlplane/credentials.ts';
import type { ControlPlaneEndpoints } from '../controlplane/endpoints.ts';
import type { Svid } from './svid.ts';

export interface SignedCertificate {
  readonly spiffeId: string;
  readonly certChainPem: string;
  readonly trustBundlePem: string;
  readonly expiresAtMs: number;
}

export interface SignRequest {
  readonly csrPem: string;
  readonly inboundAddress: string;
  /** The SVID we hold now: a renewal presents it as the client certificate. */
  readonly current?: Svid;
}

/**
 * Turns a CSR into a certificate. Rejects with AIRLOCK_UPSTREAM_UNAVAILABLE when trying again may
 * help (control plane unreachable), AIRLOCK_ATTESTATION_FAILED when it will not (token refused).
 */
export interface CertificateSigner {
  sign(request: SignRequest): Promise<SignedCertificate>;
  close(): void;
}

const SIGN_DEADLINE_MS = 10_000;

/** Where the control plane is (every endpoint), who it must be, and the lowest TLS version to speak to it (default TLS 1.3). */
interface ControlPlaneTarget {
  readonly endpoints: ControlPlaneEndpoints;
  readonly pool: ControlPlanePool;
  readonly controlPlaneId: string;
  readonly tlsMinVersion?: TlsMinVersion;
}

// Codes that say "the control plane answered and refused": retrying the same token cannot help.
const PERMANENT = new Set<number>([status.UNAUTHENTICATED, status.PERMISSION_DENIED, status.INVALID_ARGUMENT, status.FAILED_PRECONDITION, status.NOT_FOUND, status.ALREADY_EXISTS]);

type Attestation = { readonly joinToken: string } | { readonly kubernetesSaToken: string } | undefined;

function signOnce(client: IdentityServiceClient, request: SignRequest, attestation: Attestation): Promise<SignedCertificate> {
  return new Promise((resolve, reject) => {
    client.signCertificate(
      { csrPem: request.csrPem, inboundAddress: request.inboundAddress, ...attestation },
      new Metadata(),
      { deadline: Date.now() + SIGN_DEADLINE_MS },
      (err: ServiceError | null, res: SignCertificateResponse) => {
        if (err === null) {
          resolve({ spiffeId: res.spiffeId, certChainPem: res.certChainPem, trustBundlePem: res.trustBundlePem, expiresAtMs: res.expiresAtUnixMs });
        } else if (PERMANENT.has(err.code)) {
          reject(new AirlockError(ErrorCode.Attestation, `the control plane refused to sign: ${err.details}`, { cause: err }));
        } else {
          reject(new AirlockError(ErrorCode.UpstreamUnavailable, `control plane unavailable: ${err.details}`, { cause: err }));
        }
      },
    );
  });
}

/** Unreachable, too late: another endpoint may answer. A refusal is the control plane's answer. */
const worthAnotherEndpoint = (err: unknown): boolean => err instanceof AirlockError && err.code === ErrorCode.UpstreamUnavailable;

/**
 * SignCertificate on the first endpoint that answers (ControlPlanePool), with one client per
 * endpoint made from `credentials`; new credentials (a renewed SVID) replace every client.
 */
class FailoverSigning {
  readonly #o: ControlPlaneTarget;
  readonly #clients: PerEndpoint<IdentityServiceClient>;
  #credentials: ChannelCredentials | undefined;

  constructor(o: ControlPlaneTarget) {
    this.#o = o;
    this.#clients = new PerEndpoint(o.endpoints);
  }

  sign(credentials: ChannelCredentials, request: SignRequest, attestation: Attestation): Promise<SignedCertificate> {
    if (credentials !== this.#credentials) {
      this.#clients.clear();
      this.#credentials = credentials;
    }
    return this.#o.pool.firstAnswer(
      'sign',
      (address) => signOnce(this.#clients.get(address, () => new IdentityServiceClient(address, credentials, CONTROL_PLANE_CHANNEL_OPTIONS)), request, attestation),
      worthAnotherEndpoint,
    );
  }

  close(): void {
    this.#clients.close();
  }
}

/** First issuance: server-authenticated TLS to the control plane, attested by a join token. */
export class JoinTokenSigner implements CertificateSigner {
  readonly #signing: FailoverSigning;
  readonly #credentials: ChannelCredentials;
  readonly #joinToken: string;

  constructor(o: ControlPlaneTarget & { caPem: string; joinToken: string }) {
    this.#joinToken = o.joinToken;
    this.#signing = new FailoverSigning(o);
    this.#credentials = controlPlaneCredentials(o.caPem, o.controlPlaneId, o.tlsMinVersion ?? DEFAULT_TLS_MIN_VERSION);
  }

  sign(request: SignRequest): Promise<SignedCertificate> {
    return this.#signing.sign(this.#credentials, request, { joinToken: this.#joinToken });
  }

  close(): void {
    this.#signing.close();
  }
}

/**
 * First issuance in a Kubernetes pod: attested by the projected service-account token (audience
 * airlock), read from its file at each attempt since the kubelet rotates it.
 */
export class KubernetesTokenSigner implements CertificateSigner {
  readonly #signing: FailoverSigning;
  readonly #credentials: ChannelCredentials;
  readonly #tokenFile: string;

  constructor(o: ControlPlaneTarget & { caPem: string; tokenFile: string }) {
    this.#tokenFile = o.tokenFile;
    this.#signing = new FailoverSigning(o);
    this.#credentials = controlPlaneCredentials(o.caPem, o.controlPlaneId, o.tlsMinVersion ?? DEFAULT_TLS_MIN_VERSION);
  }

  async sign(request: SignRequest): Promise<SignedCertificate> {
    let token: string;
    try {
      token = (await readFile(this.#tokenFile, 'utf8')).trim();
    } catch (err) {
      // The kubelet may not have written it yet: worth retrying.
      throw new AirlockError(ErrorCode.UpstreamUnavailable, `cannot read the service account token ${this.#tokenFile}: ${errorMessage(err)}`);
    }
    return this.#signing.sign(this.#credentials, request, { kubernetesSaToken: token });
  }

  close(): void {
    this.#signing.close();
  }
}

/**
 * Renewal: mTLS with the SVID we hold (`request.current`), no token: the control plane renews the
 * identity the client certificate proves. A channel per SVID, since credentials are per channel.
 */
export class MtlsRenewalSigner implements CertificateSigner {
  readonly #o: ControlPlaneTarget;
  readonly #signing: FailoverSigning;
  #credentials: ChannelCredentials | undefined;
  #credentialsSvid: Svid | undefined;

  constructor(o: ControlPlaneTarget) {
    this.#o = o;
    this.#signing = new FailoverSigning(o);
  }

  sign(request: SignRequest): Promise<SignedCertificate> {
    const svid = request.current;
    if (svid === undefined) return Promise.reject(new AirlockError(ErrorCode.Internal, 'a renewal needs the current SVID'));
    if (this.#credentials === undefined || this.#credentialsSvid !== svid) {
      this.#credentials = controlPlaneCredentials(svid.trustBundlePem, this.#o.controlPlaneId, this.#o.tlsMinVersion ?? DEFAULT_TLS_MIN_VERSION, svid);
      this.#credentialsSvid = svid;
    }
    return this.#signing.sign(this.#credentials, request, undefined);
  }

  close(): void {
    this.#signing.close();
  }
}
