import { BlockList, isIP } from 'node:net';
import { defineConfig, dnsNames, duration, formatHostPort, hostPort, integer, oneOf, optionalHostPort, optionalString, refine, string, tlsMinVersion, trustDomain, type ConfigOf, type ListenAddress } from '@airlock/common/config';
import { ConfigError, errorMessage } from '@airlock/common/errors';
import { DEFAULT_TICKET_TTL_MS, MAX_TICKET_TTL_MS } from '@airlock/common/ticket';
import { parseStoreLocation } from '../store/store-location.ts';
import { MAX_FLOWS_PER_IDENTITY, MAX_IDENTITIES } from '../baselines/learner.ts';

/** Every setting of `airlock control-plane`: flags, `AIRLOCK_*` env vars and the config file share it. */
export const controlPlaneConfig = defineConfig('AIRLOCK', {
  trustDomain: trustDomain({ description: 'SPIFFE trust domain of every identity this control plane issues.', default: 'airlock.local' }),
  dataDir: string({ description: 'Directory for the root CA (key mode 0600), the admin token and the SQLite store.', default: '.airlock/control-plane' }),
  store: refine(string({ description: 'Where the state lives: `sqlite` (airlock.db in dataDir: one replica), `sqlite:DIR`, or `etcd://host:port[,host:port…]` (etcd members: any number of replicas; TLS with etcdCaFile).', default: 'sqlite' }), (text) => {
    try {
      parseStoreLocation(text);
      return undefined;
    } catch (err) {
      return errorMessage(err);
    }
  }),
  storeStaleAfter: duration({ description: 'How long the store may not answer before this replica reports itself not ready (/readyz 503); it keeps deciding from the state it holds meanwhile.', default: 30_000, minMs: 1000 }),
  etcdCaFile: optionalString({ description: "PEM CA of the etcd members' certificates: the store is then reached over TLS (https)." }),
  etcdCertFile: optionalString({ description: 'PEM client certificate for etcd (with etcdKeyFile and etcdCaFile).' }),
  etcdKeyFile: optionalString({ description: 'PEM private key of etcdCertFile.' }),
  etcdUsername: optionalString({ description: 'etcd user (role-based access), with etcdPasswordFile.' }),
  etcdPasswordFile: optionalString({ description: 'File holding the password of etcdUsername (never a flag or env value: it would show in ps and logs).' }),
  grpcListen: hostPort({ description: 'gRPC over mTLS: identity and authorization.', default: { host: '0.0.0.0', port: 15012 } }),
  grpcReflection: oneOf(['off', 'on'] as const, { description: 'gRPC server reflection on grpcListen (for grpcurl): `on` describes the whole API to anyone who can reach the port, without a client certificate.', default: 'off' }),
  httpListen: hostPort({ description: 'Plain HTTP for Prometheus and probes: /metrics, /healthz, /readyz (the admin API is on adminListen).', default: { host: '0.0.0.0', port: 15014 } }),
  adminListen: hostPort({ description: "The admin JSON API under /v1/: HTTPS with the control plane's own certificate (the one gRPC presents), unless adminTransport says otherwise.", default: { host: '0.0.0.0', port: 15013 } }),
  adminTransport: oneOf(['tls', 'http', 'http-insecure'] as const, {
    description: 'How adminListen serves: `tls`; `http` (plain, refused unless adminListen is a loopback address); `http-insecure` (plain on any address, e.g. behind a TLS-terminating proxy: bearer tokens cross the network in clear text; logged as a warning at start).',
    default: 'tls',
  }),
  policyFile: optionalString({ description: 'YAML file of Segment and Policy documents. Without one, every call is denied.' }),
  kubernetesJwks: optionalString({ description: 'JWKS (file path or http(s) URL) of the Kubernetes service-account issuer: enables attestation by projected service-account token (audience airlock).' }),
  kubernetesIssuer: optionalString({ description: 'The `iss` claim Kubernetes service-account tokens must carry (required with kubernetesJwks).' }),
  kubernetesApiServer: optionalString({ description: 'https URL of the Kubernetes API server (e.g. https://kubernetes.default.svc): enables attestation by the TokenReview API, which also refuses a token whose pod is gone. With kubernetesJwks too, a token must pass both.' }),
  kubernetesApiCaFile: string({ description: 'PEM CA bundle the API server certificate must chain to (TokenReview).', default: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt' }),
  kubernetesApiTokenFile: string({ description: "The control plane's own service-account token, sent as the bearer of each TokenReview (re-read each time; it needs RBAC to create tokenreviews).", default: '/var/run/secrets/kubernetes.io/serviceaccount/token' }),
  caCertFile: optionalString({ description: 'Bring your own CA: PEM of an intermediate CA (e.g. from cert-manager), then any intermediates above it, that issues SVIDs instead of the self-made root. Needs caKeyFile and caBundleFile.' }),
  caKeyFile: optionalString({ description: 'PEM RSA private key of caCertFile.' }),
  caKeyEncryptionKeyFile: optionalString({ description: "File of 32 random bytes, base64 (head -c 32 /dev/urandom | base64): self-made roots' keys are sealed with it into the store, so every replica sharing it can issue (needed with store etcd unless the operator CA files are given)." }),
  caBundleFile: optionalString({ description: 'PEM root(s) caCertFile chains to: the trust bundle given to sidecars.' }),
  svidTtl: duration({ description: 'Lifetime of issued X.509-SVIDs.', default: 3_600_000, minMs: 1000 }),
  ticketTtl: duration({ description: 'Lifetime of the ticket an allowed mesh call carries to its destination sidecar, which admits the call on it without asking again (at most 10s).', default: DEFAULT_TICKET_TTL_MS, minMs: 100, maxMs: MAX_TICKET_TTL_MS }),
  ticketKeyRotation: duration({ description: 'How often the secret ticket keys are derived from is replaced; the previous one stays accepted until the next rotation.', default: 24 * 3_600_000, minMs: 1000 }),
  tlsMinVersion: tlsMinVersion({ description: 'Lowest TLS version of the gRPC, admin API and injection webhook listeners (sidecars, admin clients and the Kubernetes API server must speak it too).' }),
  maxConnections: integer({ description: 'Open connections each listener (gRPC, admin API, metrics and probes) accepts at once; more are closed at once and counted (airlock_control_plane_connections_refused_total).', default: 10000, min: 1, max: 1000000 }),
  headersTimeout: duration({ description: "How long a client of the admin API or the metrics listener has to send a request's headers; past it: 408 and the connection closed.", default: 10_000, minMs: 100 }),
  requestTimeout: duration({ description: 'How long a client of the admin API or the metrics listener has to send a whole request, body included; past it: 408.', default: 60_000, minMs: 100 }),
  tlsHandshakeTimeout: duration({ description: 'How long a client of the gRPC or admin API listener has to finish its TLS handshake (a silent or slow ClientHello is cut then).', default: 10_000, minMs: 100 }),
  grpcMaxConnectionsPerClient: integer({ description: 'Open gRPC connections one client holds at once: a verified SPIFFE ID from one address (one pod: its sidecar uses a few), else one address (joins, admin certificates); more are closed at once and counted (reason client_connections), so one compromised pod cannot take every connection of maxConnections, nor the share of another pod of its service account.', default: 64, min: 1, max: 1000000 }),
  grpcMaxConcurrentStreams: integer({ description: 'gRPC calls in flight on one connection (HTTP/2 streams); a client past it waits.', default: 128, min: 1, max: 65535 }),
  serverDnsNames: dnsNames({ description: "DNS names put in the control plane's serving certificate besides localhost (e.g. airlock-control-plane.airlock-system.svc), so that clients such as the Kubernetes API server calling the injection webhook can verify it.", default: [] }),
  injectionListen: optionalHostPort({ description: 'HTTPS (the serving certificate, tlsMinVersion) for the sidecar injection webhook, POST /inject (AdmissionReview v1). Unset: no webhook. Needs injectionConfigFile.' }),
  injectionConfigFile: optionalString({ description: 'YAML or JSON file of what the injection webhook injects: image, controlPlane, resources, transparent … (see "Sidecar injection").' }),
  replicaName: optionalString({ description: "This control plane's name in its audit events (`replica`); default: the host name (a pod's name in Kubernetes)." }),
  auditCheckpointEvery: integer({ description: 'A signed audit checkpoint after this many audit events (see "Audit trail").', default: 1000, min: 1, max: 1_000_000 }),
  auditCheckpointInterval: duration({ description: 'A signed audit checkpoint at least this often while audit events are written.', default: 60_000, minMs: 1000 }),
  auditHttpUrl: refine(optionalString({ description: 'Ship audit events to this http(s) URL too, as batches of JSON lines (POST, application/x-ndjson: e.g. an Elasticsearch bulk ingest proxy, a Splunk HEC raw endpoint), through a spool on disk (see "Audit trail").' }), (url) => {
    if (url === undefined) return undefined;
    try {
      const u = new URL(url);
      return u.protocol === 'http:' || u.protocol === 'https:' ? undefined : `auditHttpUrl must be http or https, not ${u.protocol}`;
    } catch {
      return `auditHttpUrl is not a URL: ${url}`;
    }
  }),
  auditHttpTokenFile: optionalString({ description: 'File holding the bearer token sent to auditHttpUrl (re-read for each batch).' }),
  auditHttpCaFile: optionalString({ description: "PEM CA bundle auditHttpUrl's certificate must chain to (default: the system's CAs)." }),
  auditSyslogAddress: refine(optionalHostPort({ description: 'Ship audit events to this syslog collector too (host:port): RFC 5424 messages over TLS with RFC 5425 framing, through a spool on disk (see "Audit trail").' }), (a) =>
    a === undefined || a.port > 0 ? undefined : 'auditSyslogAddress needs a port (1-65535)'),
  auditSyslogCaFile: optionalString({ description: "PEM CA bundle the syslog collector's certificate must chain to (default: the system's CAs)." }),
  auditSyslogServerName: optionalString({ description: "The name the syslog collector's certificate must carry (and SNI); default: auditSyslogAddress's host." }),
  auditSyslogCertFile: optionalString({ description: 'PEM client certificate presented to the syslog collector (with auditSyslogKeyFile).' }),
  auditSyslogKeyFile: optionalString({ description: 'PEM private key of auditSyslogCertFile.' }),
  auditSyslogResendEvents: integer({ description: 'Syslog has no acknowledgement: this many of the last events sent are sent again after each reconnect, so a collector crash loses nothing it had received within them (receivers deduplicate by event `id`).', default: 10_000, min: 0, max: 1_000_000 }),
  auditSpoolMaxBytes: integer({ description: 'Undelivered audit events kept on disk (in dataDir/audit-spool/SINK) at most for each sink (auditHttpUrl, auditSyslogAddress), in bytes.', default: 256 * 1024 * 1024, min: 65_536, max: 1024 ** 4 }),
  auditSpoolFull: oneOf(['drop-oldest', 'fail-closed'] as const, { description: 'When the audit spool is full: `drop-oldest` (oldest events dropped, counted in airlock_audit_events_dropped_total, logged), or `fail-closed` (every Authorize refused, UNAVAILABLE, until events can be spooled again).', default: 'drop-oldest' }),
  logLevel: oneOf(['trace', 'debug', 'info', 'warn', 'error'] as const, { description: 'Log level.', default: 'info' }),
  baselineMaxFlows: integer({ description: 'Flows a behaviour baseline keeps per identity (see "Behaviour baselines"): a new flow past it is not learned while learning, and is an anomaly each time after; counted in airlock_baseline_dropped_total{what="flow"}. At most 5,000: an identity\'s baseline is stored as one record, and etcd refuses a request over 1.5 MiB.', default: MAX_FLOWS_PER_IDENTITY, min: 1, max: 5_000 }),
  baselineMaxIdentities: integer({ description: 'Identities the behaviour baselines learn at most on each replica: a new identity past it is neither learned nor judged; counted in airlock_baseline_dropped_total{what="identity"} and logged.', default: MAX_IDENTITIES, min: 1, max: 10_000_000 }),
});

export type ControlPlaneConfig = ConfigOf<typeof controlPlaneConfig.schema>;

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** Whether a listen host only takes connections from this machine (`localhost`, 127.0.0.0/8, ::1). */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  const family = isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Refuses plain HTTP for the admin API on an address other machines reach unless asked for in so
 * many words (`http-insecure`): its bearer tokens can mint join tokens for any identity.
 */
export function checkAdminTransport(config: Pick<ControlPlaneConfig, 'adminListen' | 'adminTransport'>): void {
  if (config.adminTransport !== 'http' || isLoopbackHost(config.adminListen.host)) return;
  throw new ConfigError([
    `adminTransport http serves the admin API and its bearer tokens in clear text, so it needs a loopback adminListen (127.0.0.1, ::1, localhost), not ${formatHostPort(config.adminListen)}: use tls (the default), or http-insecure behind a TLS-terminating proxy`,
  ]);
}

/** The address a local client dials for a listener bound to `a` (a wildcard means this machine). */
export function localAddressOf(a: ListenAddress, port: number): string {
  const host = a.host === '0.0.0.0' || a.host === '' ? '127.0.0.1' : a.host === '::' ? '::1' : a.host;
  return formatHostPort({ host, port });
}
