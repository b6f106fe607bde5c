import type { PodOptions } from './should-inject.ts';
import type { InjectionSettings } from './injection-settings.ts';

export const SIDECAR_CONTAINER = 'airlock-sidecar';
export const INIT_CONTAINER = 'airlock-init';
export const TOKEN_VOLUME = 'airlock-token';
export const TOKEN_DIR = '/var/run/secrets/airlock/tokens';
export const TOKEN_FILE = `${TOKEN_DIR}/airlock-token`;
/** Where the sidecar writes its egress CA (tls: inspect) for the pod's containers to trust: a memory emptyDir they share. */
export const EGRESS_CA_VOLUME = 'airlock-egress-ca';
export const EGRESS_CA_DIR = '/var/run/airlock/egress';
export const EGRESS_CA_FILE = `${EGRESS_CA_DIR}/ca.pem`;
/** The egress CA followed by the roots the sidecar trusts: for variables that replace a client's roots. */
export const EGRESS_CA_BUNDLE_FILE = `${EGRESS_CA_DIR}/ca-bundle.pem`;
/**
 * The sidecar's UID and GID (the image's USER too). Not 65532: distroless "nonroot" apps run as
 * 65532, and in transparent mode the sidecar's UID is the one exempt from redirection.
 */
export const SIDECAR_UID = 2317;
export const OUTBOUND_PORT = 15001;
/** Transparent mode's capture listener (the sidecar's captureListen), where iptables redirects the app's TCP. */
export const CAPTURE_PORT = 15002;
export const INBOUND_PORT = 15006;
export const ADMIN_PORT = 15020;
export const RESERVED_PORTS: readonly number[] = [OUTBOUND_PORT, CAPTURE_PORT, INBOUND_PORT, ADMIN_PORT];
/** As README "Sidecar memory" recommends; the image warms its compile cache with the same flags. */
export const SIDECAR_NODE_OPTIONS = '--max-semi-space-size=8';
/**
 * glibc malloc arenas, as README "Sidecar memory" recommends: by default a thread that contends
 * makes another (up to 8 per core), and each keeps its freed pages; 2 saved each sidecar 9–13 MB
 * of private memory in the 30-minute soak (docs/soak.md).
 */
export const MALLOC_ARENA_MAX = '2';

const PROXY_URL = `http://127.0.0.1:${OUTBOUND_PORT}`;
const NO_PROXY = 'localhost,127.0.0.1,::1';

/**
 * What app containers get so that their HTTP clients use the sidecar: both spellings (curl and
 * Go read the lower case, many others the upper case), and NODE_USE_ENV_PROXY for Node's own
 * http and fetch. Only loopback bypasses the sidecar.
 */
export const PROXY_ENV: readonly { name: string; value: string }[] = [
  { name: 'HTTP_PROXY', value: PROXY_URL },
  { name: 'HTTPS_PROXY', value: PROXY_URL },
  { name: 'NO_PROXY', value: NO_PROXY },
  { name: 'http_proxy', value: PROXY_URL },
  { name: 'https_proxy', value: PROXY_URL },
  { name: 'no_proxy', value: NO_PROXY },
  { name: 'NODE_USE_ENV_PROXY', value: '1' },
];

/**
 * What app containers get so that their TLS clients trust the sidecar's egress CA (tls: inspect):
 * Node adds NODE_EXTRA_CA_CERTS to its roots; OpenSSL, Go, curl and Python requests replace theirs
 * with the file named, so they get the CA followed by the roots (hosts reached through a plain
 * tunnel still verify). Unlike the proxy variables, a value the pod set is kept (its own roots).
 */
export const EGRESS_CA_ENV: readonly { name: string; value: string }[] = [
  { name: 'NODE_EXTRA_CA_CERTS', value: EGRESS_CA_FILE },
  { name: 'SSL_CERT_FILE', value: EGRESS_CA_BUNDLE_FILE },
  { name: 'CURL_CA_BUNDLE', value: EGRESS_CA_BUNDLE_FILE },
  { name: 'REQUESTS_CA_BUNDLE', value: EGRESS_CA_BUNDLE_FILE },
];

/** The restricted-profile security context, as the Pod Security Standards define it. */
const RESTRICTED = {
  runAsNonRoot: true,
  runAsUser: SIDECAR_UID,
  runAsGroup: SIDECAR_UID,
  readOnlyRootFilesystem: true,
  allowPrivilegeEscalation: false,
  privileged: false,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

/**
 * The sidecar as a native sidecar (an init container with restartPolicy: Always): the kubelet
 * starts the app containers once its startup probe (/readyz: it holds an SVID) passes, and stops it
 * after them. It is `airlock sidecar`, configured by env (README "airlock sidecar" settings).
 */
export function sidecarContainer(settings: InjectionSettings, options: PodOptions, trustBundlePem: string): Record<string, unknown> {
  const env: { name: string; value?: string; valueFrom?: unknown }[] = [
    // First: $(POD_IP) below expands only variables defined before it.
    { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    { name: 'AIRLOCK_TRUST_DOMAIN', value: settings.trustDomain },
    { name: 'AIRLOCK_CONTROL_PLANE', value: settings.controlPlane },
    // Inline: a pod cannot mount a ConfigMap of the control plane's namespace. It only verifies the
    // control plane until the first SVID; the bundle is pushed (and rotated) after that.
    { name: 'AIRLOCK_CA_PEM', value: trustBundlePem },
    { name: 'AIRLOCK_KUBERNETES_TOKEN_FILE', value: TOKEN_FILE },
    // Peers dial the pod's IP (IPv4; an IPv6 address would need brackets).
    { name: 'AIRLOCK_INBOUND_ADVERTISE', value: `$(POD_IP):${INBOUND_PORT}` },
    ...(options.appPort === undefined ? [] : [{ name: 'AIRLOCK_APP_PORT', value: String(options.appPort) }]),
    // Transparent mode: what the init container's rules redirect is served here (README "Sidecar injection").
    ...(options.transparent ? [{ name: 'AIRLOCK_CAPTURE_LISTEN', value: `127.0.0.1:${CAPTURE_PORT}` }] : []),
    { name: 'AIRLOCK_EGRESS_CA_FILE', value: EGRESS_CA_FILE },
    { name: 'AIRLOCK_EGRESS_CA_BUNDLE_FILE', value: EGRESS_CA_BUNDLE_FILE },
    { name: 'AIRLOCK_LOG_LEVEL', value: settings.logLevel },
    { name: 'NODE_OPTIONS', value: SIDECAR_NODE_OPTIONS },
    { name: 'MALLOC_ARENA_MAX', value: MALLOC_ARENA_MAX },
  ];
  const probe = (path: string, periodSeconds: number, failureThreshold: number): Record<string, unknown> => ({
    httpGet: { path, port: ADMIN_PORT },
    periodSeconds,
    failureThreshold,
    timeoutSeconds: 1,
  });
  return {
    name: SIDECAR_CONTAINER,
    image: settings.image,
    imagePullPolicy: settings.imagePullPolicy,
    restartPolicy: 'Always',
    args: ['sidecar'],
    env,
    ports: [
      { name: 'airlock-inbound', containerPort: INBOUND_PORT, protocol: 'TCP' },
      { name: 'airlock-admin', containerPort: ADMIN_PORT, protocol: 'TCP' },
    ],
    // Up to 2 minutes to obtain the first SVID (the control plane may be starting too).
    startupProbe: probe('/readyz', 1, 120),
    readinessProbe: probe('/readyz', 5, 3),
    livenessProbe: probe('/healthz', 10, 3),
    resources: options.resources,
    securityContext: RESTRICTED,
    volumeMounts: [
      { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
      { name: EGRESS_CA_VOLUME, mountPath: EGRESS_CA_DIR },
    ],
  };
}

/** The projected service-account token the sidecar attests with: audience airlock, short-lived, rotated by the kubelet. */
export function tokenVolume(settings: InjectionSettings): Record<string, unknown> {
  return {
    name: TOKEN_VOLUME,
    projected: { sources: [{ serviceAccountToken: { audience: settings.tokenAudience, expirationSeconds: settings.tokenExpirationSeconds, path: 'airlock-token' } }] },
  };
}

/** The memory volume the sidecar writes its egress CA files to, for the pod's containers to read. */
export function egressCaVolume(): Record<string, unknown> {
  return { name: EGRESS_CA_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } };
}
