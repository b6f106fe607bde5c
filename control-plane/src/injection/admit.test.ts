import { describe, expect, it } from 'vitest';
import { applyPatch } from '../testing/json-patch.ts';
import type { AdmissionRequest } from './admission-review.ts';
import { admit } from './admit.ts';
import { InjectionError } from './injection-errors.ts';
import { parseInjectionSettings } from './injection-settings.ts';
import { redirectScript } from './redirect-rules.ts';

const TD = 'airlock.test';
const BUNDLE = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const settings = parseInjectionSettings(
  {
    image: 'ghcr.io/airlock-dev/airlock:0.1.0',
    controlPlane: 'airlock-control-plane.airlock-system.svc:15012',
    tokenExpirationSeconds: 900,
    resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
  },
  TD,
);

type Json = Record<string, unknown>;
interface TestPod {
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: Json & { containers: Json[]; initContainers?: Json[]; volumes?: Json[] };
}

function pod(o: { labels?: Record<string, string>; annotations?: Record<string, string>; spec?: Json; containers?: Json[] } = {}): TestPod {
  return {
    metadata: { name: 'researcher-0', ...(o.labels === undefined ? {} : { labels: o.labels }), ...(o.annotations === undefined ? {} : { annotations: o.annotations }) },
    spec: { containers: o.containers ?? [{ name: 'agent', image: 'agent:1', ports: [{ containerPort: 8000 }] }], ...o.spec },
  };
}

function request(object: unknown, over: Partial<AdmissionRequest> = {}): AdmissionRequest {
  return { uid: 'u-1', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE', namespace: 'agents', object, ...over };
}

/** The pod as the API server stores it after applying the answer's patch. */
function injected(p: TestPod, s = settings): TestPod {
  const { outcome, answer } = admit(request(p), s, BUNDLE);
  expect(outcome).toBe('injected');
  expect(answer.allowed).toBe(true);
  return applyPatch(p, answer.patch ?? []);
}

function env(container: Json | undefined): Record<string, unknown> {
  return Object.fromEntries(((container?.env ?? []) as { name: string; value?: string; valueFrom?: unknown }[]).map((e) => [e.name, e.value ?? e.valueFrom]));
}

describe('sidecar injection', () => {
  it('adds the sidecar as a native sidecar with its settings, the token volume, proxy env and the marker', () => {
    const out = injected(pod());
    expect(out.metadata.annotations).toEqual({ 'airlock.dev/injected': 'true' });
    const [sidecar, ...rest] = out.spec.initContainers ?? [];
    expect(rest).toEqual([]);
    expect(sidecar).toMatchObject({
      name: 'airlock-sidecar',
      image: 'ghcr.io/airlock-dev/airlock:0.1.0',
      imagePullPolicy: 'IfNotPresent',
      restartPolicy: 'Always',
      args: ['sidecar'],
      startupProbe: { httpGet: { path: '/readyz', port: 15020 } },
      readinessProbe: { httpGet: { path: '/readyz', port: 15020 } },
      livenessProbe: { httpGet: { path: '/healthz', port: 15020 } },
      resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 2317,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        privileged: false,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      },
      volumeMounts: [
        { name: 'airlock-token', mountPath: '/var/run/secrets/airlock/tokens', readOnly: true },
        { name: 'airlock-egress-ca', mountPath: '/var/run/airlock/egress' },
      ],
    });
    expect(env(sidecar)).toEqual({
      POD_IP: { fieldRef: { fieldPath: 'status.podIP' } },
      AIRLOCK_TRUST_DOMAIN: TD,
      AIRLOCK_CONTROL_PLANE: 'airlock-control-plane.airlock-system.svc:15012',
      AIRLOCK_CA_PEM: BUNDLE,
      AIRLOCK_KUBERNETES_TOKEN_FILE: '/var/run/secrets/airlock/tokens/airlock-token',
      AIRLOCK_INBOUND_ADVERTISE: '$(POD_IP):15006',
      AIRLOCK_APP_PORT: '8000',
      AIRLOCK_EGRESS_CA_FILE: '/var/run/airlock/egress/ca.pem',
      AIRLOCK_EGRESS_CA_BUNDLE_FILE: '/var/run/airlock/egress/ca-bundle.pem',
      AIRLOCK_LOG_LEVEL: 'info',
      NODE_OPTIONS: '--max-semi-space-size=8',
      MALLOC_ARENA_MAX: '2',
    });
    expect(out.spec.volumes).toEqual([
      { name: 'airlock-token', projected: { sources: [{ serviceAccountToken: { audience: 'airlock', expirationSeconds: 900, path: 'airlock-token' } }] } },
      { name: 'airlock-egress-ca', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
    ]);
    // The app trusts the sidecar's egress CA (tls: inspect), read-only.
    expect(out.spec.containers[0]?.volumeMounts).toEqual([{ name: 'airlock-egress-ca', mountPath: '/var/run/airlock/egress', readOnly: true }]);
    expect(env(out.spec.containers[0])).toMatchObject({
      NODE_EXTRA_CA_CERTS: '/var/run/airlock/egress/ca.pem',
      SSL_CERT_FILE: '/var/run/airlock/egress/ca-bundle.pem',
      CURL_CA_BUNDLE: '/var/run/airlock/egress/ca-bundle.pem',
      REQUESTS_CA_BUNDLE: '/var/run/airlock/egress/ca-bundle.pem',
      HTTP_PROXY: 'http://127.0.0.1:15001',
      HTTPS_PROXY: 'http://127.0.0.1:15001',
      NO_PROXY: 'localhost,127.0.0.1,::1',
      http_proxy: 'http://127.0.0.1:15001',
      https_proxy: 'http://127.0.0.1:15001',
      no_proxy: 'localhost,127.0.0.1,::1',
    });
  });

  it("puts the sidecar before the pod's own init containers, which get the proxy env too, and keeps existing volumes, env and annotations", () => {
    const p = pod({
      annotations: { team: 'research' },
      spec: { initContainers: [{ name: 'migrate', image: 'm:1' }], volumes: [{ name: 'data', emptyDir: {} }] },
      containers: [
        { name: 'agent', image: 'a:1', env: [{ name: 'MODEL', value: 'x' }, { name: 'HTTPS_PROXY', value: 'http://evil:3128' }] },
        { name: 'tool', image: 't:1', ports: [{ containerPort: 9000 }] },
      ],
    });
    const out = injected(p);
    expect(out.spec.initContainers?.map((c) => c.name)).toEqual(['airlock-sidecar', 'migrate']);
    expect(env(out.spec.initContainers?.[1]).HTTP_PROXY).toBe('http://127.0.0.1:15001');
    expect(out.spec.volumes?.map((v) => v.name)).toEqual(['data', 'airlock-token', 'airlock-egress-ca']);
    expect(out.metadata.annotations).toEqual({ team: 'research', 'airlock.dev/injected': 'true' });
    const agentEnv = out.spec.containers[0]?.env as { name: string; value: string }[];
    expect(agentEnv.filter((e) => e.name === 'HTTPS_PROXY')).toEqual([{ name: 'HTTPS_PROXY', value: 'http://127.0.0.1:15001' }]);
    expect(agentEnv[0]).toEqual({ name: 'MODEL', value: 'x' });
    // The first container with a port gives the app port.
    expect(env(out.spec.initContainers?.[0]).AIRLOCK_APP_PORT).toBe('9000');
    expect(admit(request(p), settings, BUNDLE).answer.warnings).toContain('container agent: HTTPS_PROXY set to the airlock sidecar');
  });

  it("keeps a container's own trust store variable (with a warning), and its own volume mounts", () => {
    const p = pod({ containers: [{ name: 'agent', image: 'a:1', env: [{ name: 'SSL_CERT_FILE', value: '/etc/corp/roots.pem' }], volumeMounts: [{ name: 'data', mountPath: '/data' }] }], spec: { volumes: [{ name: 'data', emptyDir: {} }] } });
    const out = injected(p);
    expect(env(out.spec.containers[0]).SSL_CERT_FILE).toBe('/etc/corp/roots.pem');
    expect(env(out.spec.containers[0]).REQUESTS_CA_BUNDLE).toBe('/var/run/airlock/egress/ca-bundle.pem');
    expect(out.spec.containers[0]?.volumeMounts).toEqual([{ name: 'data', mountPath: '/data' }, { name: 'airlock-egress-ca', mountPath: '/var/run/airlock/egress', readOnly: true }]);
    expect(admit(request(p), settings, BUNDLE).answer.warnings).toContain('container agent: SSL_CERT_FILE is kept as set; it will not trust hosts the sidecar inspects (tls: inspect)');
    expect(() => admit(request(pod({ spec: { volumes: [{ name: 'airlock-egress-ca', emptyDir: {} }] } })), settings, BUNDLE)).toThrow(/"airlock-egress-ca" is reserved/);
  });

  it('reads the app port, resources and transparent mode from annotations', () => {
    const out = injected(
      pod({
        annotations: {
          'airlock.dev/app-port': '3000',
          'airlock.dev/sidecar-cpu-request': '200m',
          'airlock.dev/sidecar-memory-request': '128Mi',
          'airlock.dev/sidecar-cpu-limit': '1',
          'airlock.dev/sidecar-memory-limit': '512Mi',
          'airlock.dev/transparent': 'true',
        },
      }),
    );
    const [init, sidecar] = out.spec.initContainers ?? [];
    expect(env(sidecar).AIRLOCK_APP_PORT).toBe('3000');
    // The rules redirect to the capture listener, which the sidecar opens in transparent mode only.
    expect(env(sidecar).AIRLOCK_CAPTURE_LISTEN).toBe('127.0.0.1:15002');
    expect(sidecar?.resources).toEqual({ requests: { cpu: '200m', memory: '128Mi' }, limits: { cpu: '1', memory: '512Mi' } });
    expect(init).toMatchObject({
      name: 'airlock-init',
      image: 'ghcr.io/airlock-dev/airlock:0.1.0',
      command: ['/bin/sh', '-c'],
      args: [redirectScript({ sidecarUid: 2317, capturePort: 15002 })],
      securityContext: { runAsUser: 0, allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] }, seccompProfile: { type: 'RuntimeDefault' } },
    });
    expect(init?.restartPolicy).toBeUndefined();
  });

  it('writes redirect rules that exempt the sidecar UID and loopback before redirecting TCP to the capture port', () => {
    const script = redirectScript({ sidecarUid: 2317, capturePort: 15002 }).split('\n');
    const at = (line: string): number => script.indexOf(line);
    const redirect = at('iptables -t nat -A AIRLOCK_OUTPUT -p tcp -j REDIRECT --to-ports 15002');
    expect(at('set -eu')).toBe(0);
    expect(at('iptables -t nat -A AIRLOCK_OUTPUT -o lo -j RETURN')).toBeGreaterThan(0);
    expect(at('iptables -t nat -A AIRLOCK_OUTPUT -m owner --uid-owner 2317 -j RETURN')).toBeGreaterThan(0);
    expect(at('iptables -t nat -A AIRLOCK_OUTPUT -o lo -j RETURN')).toBeLessThan(redirect);
    expect(at('iptables -t nat -A AIRLOCK_OUTPUT -m owner --uid-owner 2317 -j RETURN')).toBeLessThan(redirect);
    expect(at('iptables -t nat -A OUTPUT -p tcp -j AIRLOCK_OUTPUT')).toBeGreaterThan(redirect);
    expect(script.at(-2)).toBe('  ip6tables -t filter -A OUTPUT -j AIRLOCK_EGRESS');
  });

  it.each([
    ['a pod labelled airlock.dev/inject=disabled', pod({ labels: { 'airlock.dev/inject': 'disabled' } }), 'disabled'],
    ['a pod annotated airlock.dev/inject=disabled', pod({ annotations: { 'airlock.dev/inject': 'disabled' } }), 'disabled'],
    ['a host-network pod', pod({ spec: { hostNetwork: true } }), 'host_network'],
    ['a pod injected already', injected(pod()), 'already_injected'],
  ])('leaves alone %s', (_name, p, outcome) => {
    const r = admit(request(p), settings, BUNDLE);
    expect(r.outcome).toBe(outcome);
    expect(r.answer).toEqual({ allowed: true });
  });

  it('injects a pod whose marker annotation was set by hand (the marker cannot opt a pod out)', () => {
    const out = injected(pod({ annotations: { 'airlock.dev/injected': 'true' } }));
    expect(out.spec.initContainers?.[0]?.name).toBe('airlock-sidecar');
  });

  it('passes through what is not a pod CREATE untouched', () => {
    expect(admit(request(pod(), { operation: 'UPDATE' }), settings, BUNDLE)).toMatchObject({ outcome: 'not_a_pod_create', answer: { allowed: true } });
    expect(admit(request({}, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }), settings, BUNDLE).answer).toEqual({ allowed: true });
  });

  it.each([
    [{ 'airlock.dev/sidecar-cpu-request': 'lots' }, /airlock.dev\/sidecar-cpu-request: "lots" is not a Kubernetes quantity/],
    [{ 'airlock.dev/sidecar-memory-limit': '1GB' }, /airlock.dev\/sidecar-memory-limit: "1GB" is not a Kubernetes quantity/],
    [{ 'airlock.dev/sidecar-memory-request': '1Gi' }, /airlock.dev\/sidecar-memory-request \(1Gi\) is more than the injection settings' resources.limits.memory \(256Mi\)/],
    [{ 'airlock.dev/app-port': '99999' }, /airlock.dev\/app-port: "99999" is not a port/],
    [{ 'airlock.dev/app-port': '80; rm -rf' }, /is not a port/],
    [{ 'airlock.dev/app-port': '15006' }, /one of the sidecar's own ports/],
    [{ 'airlock.dev/transparent': 'yes' }, /airlock.dev\/transparent: "yes" must be "true" or "false"/],
  ])('refuses the pod for the annotations %j', (annotations, message) => {
    expect(() => admit(request(pod({ annotations })), settings, BUNDLE)).toThrow(InjectionError);
    expect(() => admit(request(pod({ annotations })), settings, BUNDLE)).toThrow(message);
  });

  it('refuses reserved names and, in transparent mode, an app running as the sidecar UID', () => {
    expect(() => admit(request(pod({ containers: [{ name: 'airlock-sidecar', image: 'x' }] })), settings, BUNDLE)).toThrow(/"airlock-sidecar" is reserved/);
    expect(() => admit(request(pod({ spec: { volumes: [{ name: 'airlock-token', emptyDir: {} }] } })), settings, BUNDLE)).toThrow(/"airlock-token" is reserved/);
    const mountsToken = pod({ containers: [{ name: 'app', image: 'x', volumeMounts: [{ name: 'airlock-token', mountPath: '/t' }] }] });
    expect(() => admit(request(mountsToken), settings, BUNDLE)).toThrow(/container "app" mounts "airlock-token": only the injected sidecar/);
    const initMountsToken = pod({ spec: { initContainers: [{ name: 'setup', image: 'x', volumeMounts: [{ name: 'airlock-token', mountPath: '/t' }] }] } });
    expect(() => admit(request(initMountsToken), settings, BUNDLE)).toThrow(/container "setup" mounts "airlock-token"/);
    const ownToken = pod({ spec: { volumes: [{ name: 'mine', projected: { sources: [{ serviceAccountToken: { audience: 'airlock', path: 't' } }] } }] } });
    expect(() => admit(request(ownToken), settings, BUNDLE)).toThrow(/volume "mine" projects a service account token for the audience "airlock"/);
    // A token for another audience (e.g. a vault role) is the app's business.
    const otherAudience = pod({ spec: { volumes: [{ name: 'vault', projected: { sources: [{ serviceAccountToken: { audience: 'vault', path: 't' } }] } }] } });
    expect(admit(request(otherAudience), settings, BUNDLE)).toBeDefined();
    const asSidecar = pod({ annotations: { 'airlock.dev/transparent': 'true' }, spec: { securityContext: { runAsUser: 2317 } } });
    expect(() => admit(request(asSidecar), settings, BUNDLE)).toThrow(/UID 2317/);
  });

  it.each([
    ['no spec', { metadata: {} }],
    ['no containers', { spec: { containers: [] } }],
    ['labels that are not strings', { metadata: { labels: { a: 1 } }, spec: { containers: [{ name: 'a' }] } }],
    ['env that is not a list', { spec: { containers: [{ name: 'a', env: 'HTTP_PROXY=x' }] } }],
    ['a port that is not a number', { spec: { containers: [{ name: 'a', ports: [{ containerPort: '80' }] }] } }],
    ['hostNetwork that is a string', { spec: { hostNetwork: 'false', containers: [{ name: 'a' }] } }],
    ['volumeMounts that are not a list', { spec: { containers: [{ name: 'a', volumeMounts: 'airlock-token' }] } }],
    ['a projected volume whose sources are not a list', { spec: { containers: [{ name: 'a' }], volumes: [{ name: 'v', projected: { sources: 'x' } }] } }],
  ])('refuses a malformed pod: %s', (_name, object) => {
    expect(() => admit(request(object), settings, BUNDLE)).toThrow(/malformed pod/);
  });
});
