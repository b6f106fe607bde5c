import { Counter, Histogram, type Registry } from 'prom-client';

/** Every metric of the control plane, declared once and registered on the process registry. */
export interface ControlPlaneMetrics {
  readonly decisions: Counter<'direction' | 'verdict'>;
  readonly decisionDuration: Histogram<'direction'>;
  /** Authorize calls refused before a decision: unauthenticated, permission_denied, bad_request. */
  readonly refused: Counter<'reason'>;
  readonly certificatesIssued: Counter<'attestation'>;
  /** SignCertificate calls refused: join_token_unknown/used/expired, bad_csr, unauthenticated … */
  readonly issuanceRefused: Counter<'reason'>;
}

export function createControlPlaneMetrics(registry: Registry): ControlPlaneMetrics {
  const registers = [registry];
  return {
    decisions: new Counter({
      name: 'airlock_authz_decisions_total',
      help: 'Authorization decisions made, by direction and verdict (dry-run denies count as allow).',
      labelNames: ['direction', 'verdict'] as const,
      registers,
    }),
    decisionDuration: new Histogram({
      name: 'airlock_authz_decision_duration_seconds',
      help: 'Time to make one authorization decision, from request to response.',
      labelNames: ['direction'] as const,
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
      registers,
    }),
    refused: new Counter({
      name: 'airlock_authz_refused_total',
      help: 'Authorize calls refused before any decision, by reason.',
      labelNames: ['reason'] as const,
      registers,
    }),
    certificatesIssued: new Counter({
      name: 'airlock_ca_certificates_issued_total',
      help: 'X.509-SVIDs issued, by how the caller proved its identity.',
      labelNames: ['attestation'] as const,
      registers,
    }),
    issuanceRefused: new Counter({
      name: 'airlock_ca_issuance_refused_total',
      help: 'Certificate requests refused, by reason.',
      labelNames: ['reason'] as const,
      registers,
    }),
  };
}
