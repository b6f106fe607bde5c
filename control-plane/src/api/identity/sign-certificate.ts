import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { parseHostPort } from '@airlock/common/config';
import { isControlPlaneId, parseSpiffeId, type SpiffeId } from '@airlock/common/spiffe';
import type { SignCertificateRequest, SignCertificateResponse } from '@airlock/proto/identity/v1';
import { JoinTokenError, type JoinTokens } from '../../attestation/join-tokens.ts';
import type { KubernetesAttestor } from '../../attestation/kubernetes-attestation.ts';
import { KubernetesTokenError } from '../../attestation/kubernetes-token.ts';
import type { CertificateAuthority } from '../../ca/ca.ts';
import type { Revocations } from '../../ca/revocations.ts';
import type { Quarantines } from '../../incident/quarantines.ts';
import type { RefusalLog } from '../rate-limit.ts';
import type { ControlPlaneMetrics } from '../../monitoring/metrics.ts';
import type { Store } from '../../store/store.ts';
import type { AgentRegistry } from '../../authz/registry.ts';

/** The CA issuing now and the bundle sent with each SVID (both change in a root rollover). */
export interface IssuingCa {
  issuing(): CertificateAuthority;
  bundlePem(): string;
}

export interface CertificateIssuerDeps {
  readonly ca: IssuingCa;
  readonly joinTokens: JoinTokens;
  /** Where issued certificates are recorded. */
  readonly store: Store;
  /** Where an agent registers (its inbound address, its labels): decisions read it there. */
  readonly agents: AgentRegistry;
  readonly revocations: Revocations;
  /** A quarantined identity's renewals are refused (its current SVID stays valid until it expires). */
  readonly quarantines?: Pick<Quarantines, 'isQuarantined'>;
  /** Verifies Kubernetes service-account tokens (JWKS and/or TokenReview); absent when not configured (such tokens are refused). */
  readonly kubernetes?: KubernetesAttestor;
  readonly svidTtlMs: number;
  readonly metrics: ControlPlaneMetrics;
  readonly logger: Logger;
  /** Where refusals are recorded (any peer can cause them, so main bounds their rate). */
  readonly audit: RefusalLog;
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

  async signCertificate(caller: SpiffeId | undefined, req: SignCertificateRequest): Promise<SignCertificateResponse> {
    let spiffeId: string;
    // Set by an attestation (join token, Kubernetes); undefined for a renewal, which keeps the stored labels.
    let labels: Readonly<Record<string, string>> | undefined;
    let attestation: 'join_token' | 'kubernetes' | 'renewal' | undefined = undefined;
    const refuse = (err: AirlockError, reason: string): AirlockError => {
      this.#d.metrics.issuanceRefused.inc({ reason });
      if (attestation === 'renewal') this.#d.metrics.renewalFailures.inc({ reason });
      this.#d.audit.refusal({ operation: 'SignCertificate', reasonCode: reason, reason: err.message, ...(caller === undefined ? {} : { caller: caller.uri }), ...(attestation === undefined ? {} : { attestation }) });
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
    if (req.joinToken !== undefined && req.joinToken !== '') {
      if (req.inboundAddress === '') throw refuse(new AirlockError(ErrorCode.BadRequest, 'inbound_address is required'), 'bad_request');
      attestation = 'join_token';
      spiffeId = ''; // set after the CSR checks below
    } else if (req.kubernetesSaToken !== undefined && req.kubernetesSaToken !== '') {
      if (req.inboundAddress === '') throw refuse(new AirlockError(ErrorCode.BadRequest, 'inbound_address is required'), 'bad_request');
      attestation = 'kubernetes';
      spiffeId = ''; // set after the CSR checks below
    } else if (caller !== undefined) {
      attestation = 'renewal';
      spiffeId = caller.uri;
      if (this.#d.revocations.isRevoked(spiffeId)) throw refuse(new AirlockError(ErrorCode.PermissionDenied, `${spiffeId} is revoked`), 'revoked');
      if (this.#d.quarantines?.isQuarantined(spiffeId) === true) throw refuse(new AirlockError(ErrorCode.PermissionDenied, `${spiffeId} is quarantined`), 'quarantined');
    } else {
      throw refuse(new AirlockError(ErrorCode.Unauthenticated, 'an attestation (join token) or a client certificate is required'), 'unauthenticated');
    }

    const now = this.#d.now?.() ?? Date.now();
    let issued: ReturnType<CertificateAuthority['issueSvid']>;
    try {
      // The CSR is checked before the token is consumed, so a bad CSR does not burn the token.
      const ca = this.#d.ca.issuing();
      const csr = ca.verifyCsr(req.csrPem);
      if (attestation === 'join_token') {
        let retry: boolean;
        ({ spiffeId, labels, retry } = await this.#d.joinTokens.consumeJoinToken(req.joinToken ?? '', { publicKey: csr.publicKey, inboundAddress: req.inboundAddress }));
        if (retry) this.#d.logger.info({ spiffeId }, 'join token spent again by the request that spent it (its answer was lost)');
        // A revoked identity cannot come back with a join token made for it (the token is spent).
        if (this.#d.revocations.isRevoked(spiffeId)) throw new AirlockError(ErrorCode.PermissionDenied, `${spiffeId} is revoked`);
      }
      if (attestation === 'kubernetes') {
        if (this.#d.kubernetes === undefined) throw new KubernetesTokenError('not_configured', 'Kubernetes attestation is not configured on this control plane');
        ({ spiffeId, labels } = await this.#d.kubernetes.attest(req.kubernetesSaToken ?? '', now));
        if (this.#d.revocations.isRevoked(spiffeId)) throw new AirlockError(ErrorCode.PermissionDenied, `${spiffeId} is revoked`);
      }
      // Sidecars trust whoever holds the control plane's identity to decide every call: no attestation
      // (a join token, a Kubernetes token of its service account) ever yields it.
      if (isControlPlaneId(parseSpiffeId(spiffeId))) throw new AirlockError(ErrorCode.PermissionDenied, `${spiffeId} is the control plane's own identity: no SVID is issued for it`);
      // Read again: a rollover may have happened while a TokenReview was awaited.
      issued = this.#d.ca.issuing().issueSvid(csr, spiffeId, this.#d.svidTtlMs, new Date(now));
    } catch (err) {
      if (err instanceof JoinTokenError) throw refuse(err, `join_token_${err.reason}`);
      if (err instanceof KubernetesTokenError) throw refuse(err, `kubernetes_${err.reason}`);
      if (err instanceof AirlockError && err.code === ErrorCode.PermissionDenied) throw refuse(err, spiffeId !== '' && isControlPlaneId(parseSpiffeId(spiffeId)) ? 'control_plane_identity' : 'revoked');
      if (err instanceof AirlockError) throw refuse(err, 'bad_request');
      throw err;
    }
    await this.#d.store.recordCertificate({ serial: issued.serial, spiffeId, notAfter: issued.notAfter.getTime(), issuedAt: now, issuer: issued.issuer });
    if (req.inboundAddress !== '') await this.#d.agents.upsert({ spiffeId, inboundAddress: req.inboundAddress, updatedAt: now, ...(labels === undefined ? {} : { labels }) });
    this.#d.metrics.certificatesIssued.inc({ attestation });
    if (attestation === 'renewal') this.#d.metrics.renewals.inc();
    this.#d.logger.info({ spiffeId, serial: issued.serial, notAfter: issued.notAfter.toISOString(), attestation }, 'certificate issued');
    return { spiffeId, certChainPem: issued.chainPem, trustBundlePem: this.#d.ca.bundlePem(), expiresAtUnixMs: issued.notAfter.getTime() };
  }
}
