import { REASON_CLASSES } from '@airlock/common/reason-class';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Every metric of the control plane, declared once and registered on the process registry. */
export interface ControlPlaneMetrics {
  /** By direction, verdict and reason class (monitoring/decision-counts.ts: a fixed set). */
  readonly decisions: Counter<'direction' | 'verdict' | 'reason_class'>;
  /** Denials by the policy that made them (`(none)`: no policy did), the first MAX_LABELLED_POLICIES names. */
  readonly policyDenials: Counter<'policy'>;
  readonly decisionDuration: Histogram<'direction'>;
  /** Authorize calls refused before a decision: unauthenticated, permission_denied, bad_request. */
  readonly refused: Counter<'reason'>;
  readonly certificatesIssued: Counter<'attestation'>;
  /** SignCertificate calls refused: join_token_unknown/used/expired, bad_csr, unauthenticated … */
  readonly issuanceRefused: Counter<'reason'>;
  /** SVIDs renewed over mTLS, and renewals refused (revoked identity, bad CSR …). */
  readonly renewals: Counter;
  readonly renewalFailures: Counter<'reason'>;
  /** Expiry of the control plane's own certificates: `serving` (its gRPC certificate) and `root`. */
  readonly certificateExpiry: Gauge<'certificate'>;
  readonly revocations: Counter;
  /** Connections a listener's limits cut: max_connections, request_timeout, handshake_timeout. */
  readonly connectionsRefused: Counter<'listener' | 'reason'>;
  /** Calls a RateLimit stopped (mode enforce) or would have (dry-run), by RateLimit name (bounded, see rate-limits). */
  readonly rateLimited: Counter<'rate_limit' | 'mode'>;
  /** Token buckets held, and those dropped at the bound before they had refilled (a limit then restarts full). */
  readonly rateLimitBuckets: Gauge;
  readonly rateLimitEvictions: Counter;
}

export function createControlPlaneMetrics(registry: Registry): ControlPlaneMetrics {
  const registers = [registry];
  return {
    decisions: new Counter({
      name: 'airlock_authz_decisions_total',
      help: `Authorization decisions made, by direction, verdict (dry-run denies count as allow; pending: held for a human approval) and reason class (${REASON_CLASSES.join(', ')}).`,
      labelNames: ['direction', 'verdict', 'reason_class'] as const,
      registers,
    }),
    policyDenials: new Counter({
      name: 'airlock_authz_policy_denials_total',
      help: 'Denied decisions by the deny policy that made them; (none) when no policy did (nothing allows it, a rate limit, containment); (other) past the first 100 policy names.',
      labelNames: ['policy'] as const,
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
    renewals: new Counter({
      name: 'airlock_ca_renewals_total',
      help: 'X.509-SVIDs renewed for a caller presenting its current SVID.',
      registers,
    }),
    renewalFailures: new Counter({
      name: 'airlock_ca_renewal_failures_total',
      help: 'Renewals refused, by reason (revoked, bad_request …).',
      labelNames: ['reason'] as const,
      registers,
    }),
    certificateExpiry: new Gauge({
      name: 'airlock_control_plane_certificate_expiry_timestamp_seconds',
      help: 'Expiry of the control plane certificates (serving, root), seconds since the Unix epoch.',
      labelNames: ['certificate'] as const,
      registers,
    }),
    revocations: new Counter({
      name: 'airlock_ca_revocations_total',
      help: 'Identities revoked by an admin.',
      registers,
    }),
    connectionsRefused: new Counter({
      name: 'airlock_control_plane_connections_refused_total',
      help: "Connections cut by a listener's limits (grpc, admin, http, webhook), by reason: max_connections, client_connections (gRPC: past grpcMaxConnectionsPerClient), request_timeout, handshake_timeout.",
      labelNames: ['listener', 'reason'] as const,
      registers,
    }),
    rateLimited: new Counter({
      name: 'airlock_authz_rate_limited_total',
      help: 'Calls a RateLimit document stopped (mode enforce) or would have stopped (mode dry-run), by RateLimit.',
      labelNames: ['rate_limit', 'mode'] as const,
      registers,
    }),
    rateLimitBuckets: new Gauge({
      name: 'airlock_authz_rate_limit_buckets',
      help: 'Token buckets this replica holds for RateLimit documents.',
      registers,
    }),
    rateLimitEvictions: new Counter({
      name: 'airlock_authz_rate_limit_buckets_evicted_total',
      help: 'Token buckets dropped at the bound before they had refilled (that key then starts with a full bucket).',
      registers,
    }),
  };
}
