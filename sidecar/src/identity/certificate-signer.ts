import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { IdentityServiceClient, type SignCertificateResponse } from '@airlock/proto/identity/v1';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials } from '../controlplane/credentials.ts';

export interface SignedCertificate {
  readonly spiffeId: string;
  readonly certChainPem: string;
  readonly trustBundlePem: string;
  readonly expiresAtMs: number;
}

export interface SignRequest {
  readonly csrPem: string;
  readonly inboundAddress: string;
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

// Codes that say "the control plane answered and refused": retrying the same token cannot help.
const PERMANENT = new Set<number>([status.UNAUTHENTICATED, status.PERMISSION_DENIED, status.INVALID_ARGUMENT, status.FAILED_PRECONDITION, status.NOT_FOUND, status.ALREADY_EXISTS]);

/** First issuance: server-authenticated TLS to the control plane, attested by a join token. */
export class JoinTokenSigner implements CertificateSigner {
  readonly #client: IdentityServiceClient;
  readonly #joinToken: string;

  constructor(o: { address: string; caPem: string; controlPlaneId: string; joinToken: string }) {
    this.#joinToken = o.joinToken;
    this.#client = new IdentityServiceClient(o.address, controlPlaneCredentials(o.caPem, o.controlPlaneId), CONTROL_PLANE_CHANNEL_OPTIONS);
  }

  sign(request: SignRequest): Promise<SignedCertificate> {
    return new Promise((resolve, reject) => {
      this.#client.signCertificate(
        { csrPem: request.csrPem, joinToken: this.#joinToken, inboundAddress: request.inboundAddress },
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

  close(): void {
    this.#client.close();
  }
}
