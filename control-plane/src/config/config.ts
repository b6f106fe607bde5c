import { defineConfig, dnsNames, duration, hostPort, oneOf, optionalHostPort, optionalString, string, trustDomain, type ConfigOf } from '@airlock/common/config';

/** Every setting of `airlock control-plane`: flags, `AIRLOCK_*` env vars and the config file share it. */
export const controlPlaneConfig = defineConfig('AIRLOCK', {
  trustDomain: trustDomain({ description: 'SPIFFE trust domain of every identity this control plane issues.', default: 'airlock.local' }),
  dataDir: string({ description: 'Directory for the root CA (key mode 0600), the admin token and the SQLite store.', default: '.airlock/control-plane' }),
  grpcListen: hostPort({ description: 'gRPC over mTLS: identity and authorization.', default: { host: '0.0.0.0', port: 15012 } }),
  httpListen: hostPort({ description: 'HTTP: /metrics, /healthz, /readyz and the admin JSON API under /v1/.', default: { host: '0.0.0.0', port: 15014 } }),
  policyFile: optionalString({ description: 'YAML file of Segment and Policy documents. Without one, every call is denied.' }),
  kubernetesJwks: optionalString({ description: 'JWKS (file path or http(s) URL) of the Kubernetes service-account issuer: enables attestation by projected service-account token (audience airlock).' }),
  kubernetesIssuer: optionalString({ description: 'The `iss` claim Kubernetes service-account tokens must carry (required with kubernetesJwks).' }),
  kubernetesApiServer: optionalString({ description: 'https URL of the Kubernetes API server (e.g. https://kubernetes.default.svc): enables attestation by the TokenReview API, which also refuses a token whose pod is gone. With kubernetesJwks too, a token must pass both.' }),
  kubernetesApiCaFile: string({ description: 'PEM CA bundle the API server certificate must chain to (TokenReview).', default: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt' }),
  kubernetesApiTokenFile: string({ description: "The control plane's own service-account token, sent as the bearer of each TokenReview (re-read each time; it needs RBAC to create tokenreviews).", default: '/var/run/secrets/kubernetes.io/serviceaccount/token' }),
  caCertFile: optionalString({ description: 'Bring your own CA: PEM of an intermediate CA (e.g. from cert-manager), then any intermediates above it, that issues SVIDs instead of the self-made root. Needs caKeyFile and caBundleFile.' }),
  caKeyFile: optionalString({ description: 'PEM RSA private key of caCertFile.' }),
  caBundleFile: optionalString({ description: 'PEM root(s) caCertFile chains to: the trust bundle given to sidecars.' }),
  svidTtl: duration({ description: 'Lifetime of issued X.509-SVIDs.', default: 3_600_000, minMs: 1000 }),
  serverDnsNames: dnsNames({ description: "DNS names put in the control plane's serving certificate besides localhost (e.g. airlock-control-plane.airlock-system.svc), so that clients such as the Kubernetes API server calling the injection webhook can verify it.", default: [] }),
  injectionListen: optionalHostPort({ description: 'HTTPS (TLS 1.3, the serving certificate) for the sidecar injection webhook, POST /inject (AdmissionReview v1). Unset: no webhook. Needs injectionConfigFile.' }),
  injectionConfigFile: optionalString({ description: 'YAML or JSON file of what the injection webhook injects: image, controlPlane, resources, transparent … (see "Sidecar injection").' }),
  logLevel: oneOf(['trace', 'debug', 'info', 'warn', 'error'] as const, { description: 'Log level.', default: 'info' }),
});

export type ControlPlaneConfig = ConfigOf<typeof controlPlaneConfig.schema>;
