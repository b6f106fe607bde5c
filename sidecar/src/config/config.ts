import { defineConfig, duration, hostPort, hostPorts, integer, oneOf, optionalHostPort, optionalString, port, refine, tlsMinVersion, trustDomain, type ConfigOf } from '@airlock/common/config';
import { MAX_CONTROL_PLANE_ENDPOINTS } from '../controlplane/endpoints.ts';
import { KEY_TYPES, type KeyType } from '../identity/key-and-csr.ts';

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
  captureListen: optionalHostPort({ description: 'Transparent mode: where iptables redirects the app\'s outbound TCP (127.0.0.1:15002 in injected pods). HTTP is judged by its Host, TLS by its SNI (as CONNECT <SNI>:443); anything else is refused. Unset: off.' }),
  inboundListen: hostPort({ description: 'Inbound mTLS listener for peer sidecars.', default: { host: '0.0.0.0', port: 15006 } }),
  inboundAdvertise: optionalString({ description: 'host:port at which peers reach the inbound listener (default: 127.0.0.1:<inbound port> when listening on all interfaces).' }),
  adminListen: hostPort({ description: '/metrics, /healthz, /readyz.', default: { host: '0.0.0.0', port: 15020 } }),
  appPort: port({ description: 'Port of the agent app on 127.0.0.1, where inbound calls are forwarded.', default: 8080 }),
  authzTransport: oneOf<'stream' | 'unary'>(['stream', 'unary'], { description: 'How decisions are asked for: `stream` (the calls of one event-loop turn as one message on a long-lived gRPC stream) or `unary` (one gRPC call per decision). Every call gets its own fresh decision either way.', default: 'stream' }),
  authzTimeout: duration({ description: 'How long a call waits for its authorization before it is refused with 503 (fail closed).', default: 250 }),
  mcpMaxBody: integer({ description: 'How many bytes of a POST application/json body are read to find its MCP (JSON-RPC) method and tool; a larger body is never allowed by a rule on MCP.', default: 65536, min: 1024, max: 16777216 }),
  keyType: oneOf<KeyType>(KEY_TYPES, { description: 'Key of each SVID this sidecar makes: `ecdsa-p256` (what go-spiffe and SPIRE make; cheaper mTLS handshakes) or `rsa-2048` (for peers that accept only RSA).', default: 'ecdsa-p256' }),
  tlsMinVersion: tlsMinVersion({ description: 'Lowest TLS version of the inbound mTLS listener, of mTLS to peer sidecars and of gRPC to the control plane.' }),
  logLevel: oneOf(['trace', 'debug', 'info', 'warn', 'error'] as const, { description: 'Log level.', default: 'info' }),
});

export type SidecarConfig = ConfigOf<typeof sidecarConfig.schema>;
