import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Every metric of the sidecar, built once per process and passed to the module that counts. */
export type Outcome = 'allowed' | 'denied' | 'rate_limited' | 'unavailable' | 'upstream_error' | 'bad_request' | 'internal';

export interface SidecarMetrics {
  readonly requests: Counter<'direction' | 'outcome'>;
  readonly requestDuration: Histogram<'direction'>;
  readonly authzDuration: Histogram<'direction'>;
  /** Checks per message on the authorization stream (calls coalesced in one event-loop turn). */
  readonly authzBatchChecks: Histogram;
  readonly inboundRejected: Counter<'reason'>;
  readonly certificateExpiry: Gauge;
  readonly renewals: Counter;
  readonly renewalFailures: Counter;
  /** Serials of revoked certificates this sidecar refuses (pushed by the control plane). */
  readonly revokedSerials: Gauge;
  /** CA certificates in the trust bundle in use (2 or more during a root rollover). */
  readonly trustBundleCertificates: Gauge;
  /** Per control-plane endpoint, by its index (bounded: MAX_CONTROL_PLANE_ENDPOINTS), never its address. */
  readonly controlPlaneEndpointUp: Gauge<'endpoint'>;
  readonly controlPlaneFailovers: Counter<'client'>;
  /** CONNECTs whose TLS the sidecar terminated (tls: inspect), by result: inspected, sni_mismatch, handshake_failed. */
  readonly egressInspected: Counter<'result'>;
  /** Leaf certificates minted by the egress CA. */
  readonly egressCertificatesMinted: Counter;
  /** Connections a listener closed for a limit (listener-limits.ts), by listener and reason. */
  readonly connectionsRefused: Counter<'listener' | 'reason'>;
  /** Inbound calls admitted on their ticket, without a round trip to the control plane. */
  readonly ticketAdmissions: Counter;
  /** Inbound calls that asked the control plane instead, by why (absent, bad_mac, expired, replayed …). */
  readonly ticketFallbacks: Counter<'reason'>;
  /** Of those, the ones that carried a ticket that was refused (every reason but absent). */
  readonly ticketRejections: Counter<'reason'>;
  /** The newest ticket key id this sidecar holds (0: none yet). */
  readonly ticketKeyId: Gauge;
  /** Identities revoked or quarantined, as last pushed: no call from them is admitted on a ticket. */
  readonly containedIdentities: Gauge;
  /** POST bodies read for MCP, skipped (no rule reads MCP for the destination), and read after a skip (the control plane asked). */
  readonly mcpBodies: Counter<'direction' | 'body'>;
  /** The policy version of the MCP body scope held (-1 before one arrived: every body is read). */
  readonly mcpBodyScopeVersion: Gauge;
}

// Sub-millisecond buckets: an authorization or a proxy hop is expected to cost well under 1 ms.
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export function createSidecarMetrics(registry: Registry): SidecarMetrics {
  const registers = [registry];
  return {
    requests: new Counter({
      name: 'airlock_sidecar_requests_total',
      help: 'Proxied requests by direction and outcome (allowed, denied, rate_limited, unavailable, upstream_error, bad_request, internal).',
      labelNames: ['direction', 'outcome'] as const,
      registers,
    }),
    requestDuration: new Histogram({
      name: 'airlock_sidecar_request_duration_seconds',
      help: 'Time from a request arriving at the sidecar to its response being complete.',
      labelNames: ['direction'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    authzDuration: new Histogram({
      name: 'airlock_sidecar_authz_duration_seconds',
      help: 'Time to obtain an authorization decision from the control plane (including failures).',
      labelNames: ['direction'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    authzBatchChecks: new Histogram({
      name: 'airlock_sidecar_authz_batch_checks',
      help: 'Authorization checks sent per message on the stream to the control plane.',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers,
    }),
    inboundRejected: new Counter({
      name: 'airlock_sidecar_inbound_rejected_total',
      help: 'Inbound connections refused before any request, or closed, by reason: not_ready (closed before the handshake: no SVID held yet), handshake_failed, invalid_svid (not one X.509-SVID), revoked (its certificate), quarantined (its identity, as pushed).',
      labelNames: ['reason'] as const,
      registers,
    }),
    certificateExpiry: new Gauge({
      name: 'airlock_sidecar_certificate_expiry_timestamp_seconds',
      help: 'Expiry of the current X.509-SVID, seconds since the Unix epoch (0 before the first one).',
      registers,
    }),
    renewals: new Counter({
      name: 'airlock_sidecar_certificate_renewals_total',
      help: 'X.509-SVIDs renewed (a new key and certificate, obtained over mTLS with the previous one).',
      registers,
    }),
    renewalFailures: new Counter({
      name: 'airlock_sidecar_certificate_renewal_failures_total',
      help: 'Renewal attempts that failed; the current SVID stays in use until it expires.',
      registers,
    }),
    revokedSerials: new Gauge({
      name: 'airlock_sidecar_revoked_serials',
      help: 'Revoked certificates (issuer and serial) this sidecar refuses at the inbound handshake.',
      registers,
    }),
    trustBundleCertificates: new Gauge({
      name: 'airlock_sidecar_trust_bundle_certificates',
      help: 'CA certificates in the trust bundle this sidecar verifies peers and the control plane with (more than one during a root rollover).',
      registers,
    }),
    controlPlaneEndpointUp: new Gauge({
      name: 'airlock_sidecar_control_plane_endpoint_up',
      help: 'Whether a control-plane endpoint answers (1) or gave no answer since it last failed (0), by its index in the endpoint list (logged with its address when the list changes).',
      labelNames: ['endpoint'] as const,
      registers,
    }),
    controlPlaneFailovers: new Counter({
      name: 'airlock_sidecar_control_plane_failovers_total',
      help: 'Requests moved to another control-plane endpoint after one gave no answer, by client (authorize, sign, trust_bundle).',
      labelNames: ['client'] as const,
      registers,
    }),
    egressInspected: new Counter({
      name: 'airlock_sidecar_egress_inspected_connections_total',
      help: 'CONNECT tunnels whose TLS the sidecar terminated with its egress CA (tls: inspect), by result: inspected (handshake done), sni_mismatch (refused: SNI other than the CONNECT host), handshake_failed (the agent gave up, e.g. it does not trust the egress CA).',
      labelNames: ['result'] as const,
      registers,
    }),
    egressCertificatesMinted: new Counter({
      name: 'airlock_sidecar_egress_certificates_minted_total',
      help: 'Leaf certificates minted by the egress CA for the names the agent connects to (cached; minted again near their end).',
      registers,
    }),
    connectionsRefused: new Counter({
      name: 'airlock_sidecar_connections_refused_total',
      help: 'Connections a sidecar listener closed for a limit, by listener (outbound, inbound, capture, admin) and reason (max_connections: over maxConnections; request_timeout: headers or request not received in time; tunnel_idle: a CONNECT tunnel idle past tunnelIdleTimeout).',
      labelNames: ['listener', 'reason'] as const,
      registers,
    }),
    ticketAdmissions: new Counter({
      name: 'airlock_sidecar_ticket_admissions_total',
      help: 'Inbound calls admitted on the ticket of the decision the caller got, without asking the control plane again.',
      registers,
    }),
    ticketFallbacks: new Counter({
      name: 'airlock_sidecar_ticket_fallbacks_total',
      help: 'Inbound calls decided by the control plane because their ticket was absent or refused, by reason (absent, malformed, unknown_key, bad_mac, wrong_source, wrong_destination, wrong_instance, mismatch, expired, replayed, contained, replay_cache_full).',
      labelNames: ['reason'] as const,
      registers,
    }),
    ticketRejections: new Counter({
      name: 'airlock_sidecar_ticket_rejections_total',
      help: 'Inbound calls whose ticket was refused (then decided by the control plane), by reason.',
      labelNames: ['reason'] as const,
      registers,
    }),
    ticketKeyId: new Gauge({
      name: 'airlock_sidecar_ticket_key_id',
      help: 'The newest ticket key id this sidecar holds for verifying tickets to it (0 before the first push).',
      registers,
    }),
    containedIdentities: new Gauge({
      name: 'airlock_sidecar_contained_identities',
      help: 'Identities revoked or quarantined, as last pushed by the control plane: no call from them is admitted on a ticket.',
      registers,
    }),
    mcpBodies: new Counter({
      name: 'airlock_sidecar_mcp_bodies_total',
      help: 'POST bodies read for MCP (read), not read because no rule reads MCP for the destination (skipped), and read after all because the control plane asked (reread), by direction.',
      labelNames: ['direction', 'body'] as const,
      registers,
    }),
    mcpBodyScopeVersion: new Gauge({
      name: 'airlock_sidecar_mcp_body_scope_version',
      help: 'The policy version of the MCP body scope last pushed by the control plane (-1 before one: every body is read).',
      registers,
    }),
  };
}

/** Counts bodies read and skipped for MCP in one direction; label children bound once. */
export function mcpBodyCounter(metrics: SidecarMetrics, direction: 'inbound' | 'outbound'): { count(body: 'read' | 'skipped' | 'reread'): void } {
  const c = { read: metrics.mcpBodies.labels({ direction, body: 'read' }), skipped: metrics.mcpBodies.labels({ direction, body: 'skipped' }), reread: metrics.mcpBodies.labels({ direction, body: 'reread' }) };
  return { count: (body) => c[body].inc() };
}

/** What a proxy listener records per request; label children are bound once, not hashed per call. */
export interface RequestRecorder {
  /** A start mark to hand back to `finish`. */
  start(): number;
  finish(startedAt: number, outcome: Outcome): void;
}

export function requestRecorder(metrics: SidecarMetrics, direction: 'inbound' | 'outbound'): RequestRecorder {
  const duration = metrics.requestDuration.labels({ direction });
  const counts = new Map<Outcome, { inc(): void }>();
  return {
    start: () => performance.now(),
    finish(startedAt, outcome) {
      duration.observe((performance.now() - startedAt) / 1000);
      let count = counts.get(outcome);
      if (count === undefined) {
        count = metrics.requests.labels({ direction, outcome });
        counts.set(outcome, count);
      }
      count.inc();
    },
  };
}
