import { defineConfig, duration, type Field, hostPort, hostPorts, integer, oneOf, optionalHostPort, optionalString, port, ports, refine, tlsMinVersion, trustDomain, type ConfigOf } from '@airlock/common/config';
import { MAX_CONTROL_PLANE_ENDPOINTS } from '../controlplane/endpoints.ts';
import { KEY_TYPES, type KeyType } from '../identity/key-and-csr.ts';
import { canonicalAddress, parseCidr } from '../outbound/destination-check.ts';

/** A comma-separated (or YAML) list, each item checked by `check` (which throws its message). */
function list(type: string, check: (item: string) => void, o: { description: string }): Field<readonly string[]> {
  const parse = (raw: unknown): readonly string[] => {
    const items = Array.isArray(raw) ? raw.map(String) : typeof raw === 'string' ? raw.split(',') : [String(raw)];
    const kept = items.map((s) => s.trim()).filter((s) => s !== '');
    kept.forEach(check);
    return Object.freeze(kept);
  };
  return { type, description: o.description, default: [], secret: false, optional: false, parse };
}

/** A DNS server for egressDnsServers: an IP address, optionally with a port (`[::1]:53`, `10.0.0.10:5353`). */
function checkDnsServer(s: string): void {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(s);
  const ip = m === null ? undefined : (m[1] ?? m[2] ?? '');
  if (m === null || ip === undefined || ip !== canonicalAddress(ip)?.address || Number(m[3] ?? 53) > 65535) throw new Error(`"${s}" is not an IP address[:port] (e.g. 10.96.0.10, 127.0.0.1:5353, [fd00::a]:53)`);
}

/** Every setting of `airlock sidecar`: flags, `AIRLOCK_*` env vars and the config file share it. */
export const sidecarConfig = defineConfig('AIRLOCK', {
  trustDomain: trustDomain({ description: 'Trust domain of the mesh; the control plane must present spiffe://<trustDomain>/ns/airlock-system/sa/airlock-control-plane unless controlPlaneId says otherwise.', default: 'airlock.local' }),
  controlPlane: refine(hostPorts({ description: `The control plane's gRPC endpoints: one host:port, several (comma-separated: one per replica), or a name that resolves to several addresses (a Kubernetes headless Service), resolved again every controlPlaneResolveInterval. Checks spread over two healthy endpoints; one that gives no answer is retried on another within authzTimeout. At most ${MAX_CONTROL_PLANE_ENDPOINTS} addresses.`, default: [{ host: '127.0.0.1', port: 15012 }] }), (list) =>
    list.length > MAX_CONTROL_PLANE_ENDPOINTS ? `at most ${MAX_CONTROL_PLANE_ENDPOINTS} endpoints, got ${list.length}` : undefined),
  controlPlaneResolveInterval: duration({ description: 'How often the host names of controlPlane are resolved again (replicas come and go behind a headless Service).', default: 30_000, minMs: 1000 }),
  controlPlaneId: optionalString({ description: 'SPIFFE ID the control plane must present (default derived from trustDomain).' }),
  caFile: optionalString({ description: 'PEM trust bundle used to verify the control plane before the first SVID is issued (or caPem).' }),
  caPem: optionalString({ description: 'The same trust bundle as PEM text instead of a file: what sidecar injection sets (a pod cannot mount a file of the control plane\'s namespace).' }),
  joinToken: optionalString({ description: 'One-time join token (from `airlock token create`) that attests this sidecar. Prefer the env var.', secret: true }),
  kubernetesTokenFile: optionalString({ description: 'Projected Kubernetes service-account token (audience airlock) that attests this sidecar instead of a join token.' }),
  outboundListen: hostPort({ description: 'Outbound HTTP proxy for the agent (HTTP_PROXY); CONNECT for HTTPS egress.', default: { host: '127.0.0.1', port: 15001 } }),
  plainHttpPorts: ports({ description: 'Ports on which a CONNECT is answered 200 and served as HTTP (what Node\'s fetch and undici 7 send for http:// URLs): each request inside is authorized and forwarded as its absolute-form twin. A CONNECT to a mesh host on another port is served so once allowed; elsewhere a CONNECT is a tunnel judged on host and port. Empty: none.', default: [80] }),
  captureListen: optionalHostPort({ description: 'Transparent mode: where iptables redirects the app\'s outbound TCP (127.0.0.1:15002 in injected pods). HTTP is judged by its Host, TLS by its SNI (as CONNECT <SNI>:443); anything else is refused. Unset: off.' }),
  inboundListen: hostPort({ description: 'Inbound mTLS listener for peer sidecars.', default: { host: '0.0.0.0', port: 15006 } }),
  inboundAdvertise: optionalString({ description: 'host:port at which peers reach the inbound listener (default: 127.0.0.1:<inbound port> when listening on all interfaces).' }),
  adminListen: hostPort({ description: '/metrics, /healthz, /readyz.', default: { host: '0.0.0.0', port: 15020 } }),
  appPort: port({ description: 'Port of the agent app on 127.0.0.1, where inbound calls are forwarded.', default: 8080 }),
  authzTransport: oneOf<'stream' | 'unary'>(['stream', 'unary'], { description: 'How decisions are asked for: `stream` (the calls of one event-loop turn as one message on a long-lived gRPC stream) or `unary` (one gRPC call per decision). Every call gets its own fresh decision either way.', default: 'stream' }),
  authzTimeout: duration({ description: 'How long a call waits for its authorization before it is refused with 503 (fail closed).', default: 250 }),
  maxConnections: integer({ description: 'Open connections each listener (outbound, inbound, capture, admin) accepts at once; more are closed at once and counted (airlock_sidecar_connections_refused_total).', default: 10000, min: 1, max: 1000000 }),
  headersTimeout: duration({ description: 'How long a client has to send a request\'s headers (outbound and inbound); past it: 408 and the connection closed (a slow-headers client holds nothing for long).', default: 10_000, minMs: 100 }),
  requestTimeout: duration({ description: 'How long a client has to send a whole request, body included; past it: 408.', default: 60_000, minMs: 100 }),
  tlsHandshakeTimeout: duration({ description: 'How long a peer has to finish the mTLS handshake on the inbound listener (a silent or slow ClientHello is cut then).', default: 10_000, minMs: 100 }),
  idleMemoryRelease: duration({ description: 'Once started, and after each interval this long in which the event loop was busy under 1 % of the time (and busier before), V8 gives back the memory the last burst grew (one full compacting collection, a pause of 20–45 ms while the loop is quiet); 0: never.', default: 10_000, minMs: 0 }),
  upstreamConnectTimeout: duration({ description: 'How long an external host (each of its addresses) or a peer sidecar may take to accept a connection, and then to finish the TLS handshake when the sidecar speaks TLS to it; past it: 504 upstream_timeout.', default: 10_000, minMs: 100 }),
  upstreamHeadersTimeout: duration({ description: 'How long an external host or peer sidecar may take to send its response headers once the request is sent; past it: 504 upstream_timeout. Long by default: a non-streaming LLM completion answers only when it is done.', default: 300_000, minMs: 100 }),
  upstreamBodyTimeout: duration({ description: 'How long a response body may stay silent between two reads; past it the call is cut (the agent sees its connection close) and the upstream connection is freed. An idle timer: an answer that keeps sending (an LLM stream) is relayed as long as it lasts.', default: 300_000, minMs: 100 }),
  tunnelIdleTimeout: duration({ description: 'A CONNECT tunnel with no bytes either way for this long is closed.', default: 300_000, minMs: 100 }),
  mcpMaxBody: integer({ description: 'How many bytes of a POST application/json body are read to find its MCP (JSON-RPC) method and tool; a larger body is never allowed by a rule on MCP.', default: 65536, min: 1024, max: 16777216 }),
  egressForbidCidrs: list('CIDRs (comma-separated)', (c) => void parseCidr(c), { description: 'Addresses refused to external calls on top of the built-in set (loopback, link-local, cloud metadata, unspecified, the sidecar\'s and the control plane\'s ports), e.g. 10.0.0.0/8: checked on every address a name resolves to, and on IP literals.' }),
  egressAllowCidrs: list('CIDRs (comma-separated)', (c) => void parseCidr(c), { description: 'Addresses external calls may reach even where loopback, link-local or egressForbidCidrs refuse them (e.g. 10.1.2.0/24 inside a forbidden 10.0.0.0/8). Never cloud metadata, unspecified, or the sidecar\'s or control plane\'s ports.' }),
  egressDnsServers: list('IP[:port] (comma-separated)', checkDnsServer, { description: 'DNS servers the sidecar asks (A and AAAA) to resolve external hosts before checking their addresses; unset: the system resolver (getaddrinfo: /etc/hosts, resolv.conf).' }),
  egressCaFile: optionalString({ description: 'Where the sidecar writes the certificate (PEM) of its egress CA at start, for the agent to trust (SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE): a CONNECT to a host whose policy says tls: inspect is answered with a certificate it signs. Its key is made at start and never leaves the sidecar. Unset: not written (an agent then cannot trust an inspected tunnel).' }),
  egressCaBundleFile: optionalString({ description: 'Where the sidecar writes its egress CA certificate followed by the roots it verifies external hosts with (egressTrustBundleFile, or Node\'s root certificates): a whole trust store for clients whose variable replaces their roots (SSL_CERT_FILE, CURL_CA_BUNDLE, REQUESTS_CA_BUNDLE), so hosts reached through a plain tunnel still verify. Unset: not written.' }),
  egressTrustBundleFile: optionalString({ description: 'PEM bundle the certificates of external hosts are verified against when the sidecar speaks TLS to them (tls: inspect, tls: originate); unset: Node\'s root certificates (Mozilla\'s). A certificate that does not verify is a 502, never a downgrade.' }),
  keyType: oneOf<KeyType>(KEY_TYPES, { description: 'Key of each SVID this sidecar makes: `ecdsa-p256` (what go-spiffe and SPIRE make; cheaper mTLS handshakes) or `rsa-2048` (for peers that accept only RSA).', default: 'ecdsa-p256' }),
  tlsMinVersion: tlsMinVersion({ description: 'Lowest TLS version of the inbound mTLS listener, of mTLS to peer sidecars and of gRPC to the control plane.' }),
  logLevel: oneOf(['trace', 'debug', 'info', 'warn', 'error'] as const, { description: 'Log level.', default: 'info' }),
});

export type SidecarConfig = ConfigOf<typeof sidecarConfig.schema>;
