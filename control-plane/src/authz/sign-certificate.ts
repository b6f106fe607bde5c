import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { parseHostPort } from '@airlock/common/config';
import type { SpiffeId } from '@airlock/common/spiffe';
import type { SignCertificateRequest, SignCertificateResponse } from '@airlock/proto/identity/v1';
import { JoinTokenError, type JoinTokens } from '../attestation/join-tokens.ts';
import type { CertificateAuthority } from '../ca/ca.ts';
import type { ControlPlaneMetrics } from '../monitoring/metrics.ts';
import type { Store } from '../store/store.ts';

export interface CertificateIssuerDeps {
  readonly ca: CertificateAuthority;
  readonly joinTokens: JoinTokens;
  readonly store: Store;
  readonly svidTtlMs: number;
  readonly metrics: ControlPlaneMetrics;
  readonly logger: Logger;
  readonly now?: () => number;
}

/**
 * SignCertificate, free of gRPC. The identity comes from a join token (first call), or from a
 * verified client certificate (renewal of the same identity); never from the CSR.
 */
export class CertificateIssuer {
  readonly #d: CertificateIssuerDeps;

  constructor(deps: CertificateIssuerDeps) {
    this.#d = deps;
  }

  signCertificate(caller: SpiffeId | undefined, req: SignCertificateRequest): SignCertificateResponse {
    const refuse = (err: AirlockError, reason: string): AirlockError => {
      this.#d.metrics.issuanceRefused.inc({ reason });
      this.#d.logger.warn({ reason, error: err.message, caller: caller?.uri }, 'certificate request refused');
      return err;
    };
    // Everything cheap is checked before a join token is spent.
    if (req.inboundAddress !== '') {
      try {
        parseHostPort(req.inboundAddress);
      } catch (err) {
        throw refuse(new AirlockError(ErrorCode.BadRequest, `inbound_address: ${errorMessage(err)}`), 'bad_request');
      }
    }
    let spiffeId: string;
    let attestation: 'join_token' | 'renewal';
    if (req.joinToken !== undefined && req.joinToken !== '') {
      if (req.inboundAddress === '') throw refuse(new AirlockError(ErrorCode.BadRequest, 'inbound_address is required'), 'bad_request');
      attestation = 'join_token';
      spiffeId = ''; // set after the CSR checks below
    } else if (caller !== undefined) {
      attestation = 'renewal';
      spiffeId = caller.uri;
    } else {
      throw refuse(new AirlockError(ErrorCode.Unauthenticated, 'an attestation (join token) or a client certificate is required'), 'unauthenticated');
    }

    const now = this.#d.now?.() ?? Date.now();
    let issued: ReturnType<CertificateAuthority['issueSvid']>;
    try {
      // The CSR is checked before the token is consumed, so a bad CSR does not burn the token.
      const csr = this.#d.ca.verifyCsr(req.csrPem);
      if (attestation === 'join_token') spiffeId = this.#d.joinTokens.consumeJoinToken(req.joinToken ?? '');
      issued = this.#d.ca.issueSvid(csr, spiffeId, this.#d.svidTtlMs, new Date(now));
    } catch (err) {
      if (err instanceof JoinTokenError) throw refuse(err, `join_token_${err.reason}`);
      if (err instanceof AirlockError) throw refuse(err, 'bad_request');
      throw err;
    }
    this.#d.store.recordCertificate({ serial: issued.serial, spiffeId, notAfter: issued.notAfter.getTime(), issuedAt: now });
    if (req.inboundAddress !== '') this.#d.store.upsertAgent({ spiffeId, inboundAddress: req.inboundAddress, updatedAt: now });
    this.#d.metrics.certificatesIssued.inc({ attestation });
    this.#d.logger.info({ spiffeId, serial: issued.serial, notAfter: issued.notAfter.toISOString(), attestation }, 'certificate issued');
    return { spiffeId, certChainPem: issued.certPem, trustBundlePem: this.#d.ca.certPem, expiresAtUnixMs: issued.notAfter.getTime() };
  }
}
