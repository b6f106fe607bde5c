import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { controlPlaneConfig } from '@airlock/control-plane/config';
import { parsePolicyText } from '@airlock/control-plane/policy';
import { CertificateAuthority } from '../control-plane/src/ca/ca.ts';
import { all, chartDir, find, lintStrict, renderChart, RELEASE_NAMESPACE, type K8sObject } from './support/helm-chart.ts';
import { createOperatorPki } from './support/operator-ca.ts';

/**
 * Settings the chart renders that other branches of issue 13 (and the etcd issue) add to the control
 * plane: `injection*`/`serverDnsNames` (the injection webhook), `store`/`etcd*` (the etcd store).
 * Every other rendered key must be a setting the control plane knows today.
 */

/** Reads a nested field of a rendered object. */
function dig(o: unknown, ...path: (string | number)[]): unknown {
  return path.reduce<unknown>((node, k) => (node !== null && typeof node === 'object' ? (node as Record<string | number, unknown>)[k] : undefined), o);
}

interface Container {
  name: string;
  args: string[];
  env?: { name: string; value?: string }[];
  ports: { name: string; containerPort: number }[];
  securityContext: Record<string, unknown>;
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  startupProbe: { httpGet: { path: string; port: string } };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
}
interface PodSpec {
  serviceAccountName: string;
  securityContext: Record<string, unknown>;
  containers: Container[];
  volumes: { name: string; configMap?: { name: string; items: { key: string; path: string }[] }; secret?: { secretName: string; defaultMode?: number }; persistentVolumeClaim?: { claimName: string }; emptyDir?: object }[];
}
interface Selector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}
interface Webhook {
  name: string;
  namespaceSelector: Selector;
  objectSelector: Selector;
  failurePolicy: string;
  sideEffects: string;
  clientConfig: { service?: { name: string; namespace: string; port: number; path: string }; url?: string; caBundle?: string };
}

function podSpec(objects: K8sObject[]): PodSpec {
  return dig(find(objects, 'Deployment'), 'spec', 'template', 'spec') as PodSpec;
}
function container(objects: K8sObject[]): Container {
  const c = podSpec(objects).containers[0];
  if (c === undefined) throw new Error('no container');
  return c;
}
function webhooks(objects: K8sObject[]): Webhook[] {
  return dig(find(objects, 'MutatingWebhookConfiguration'), 'webhooks') as Webhook[];
}
function configMapData(objects: K8sObject[]): Record<string, string> {
  return dig(find(objects, 'ConfigMap'), 'data') as Record<string, string>;
}
function settings(objects: K8sObject[]): Record<string, unknown> {
  return parse(configMapData(objects)['config.yaml'] ?? '') as Record<string, unknown>;
}
function secretData(objects: K8sObject[], name: string): Record<string, string> {
  const data = dig(find(objects, 'Secret', name), 'data') as Record<string, string>;
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}
/** Where a file path of the config lands: the mount that holds its directory. */
function mountOf(c: Container, path: string): { name: string; mountPath: string; readOnly?: boolean } | undefined {
  return c.volumeMounts.find((m) => path.startsWith(`${m.mountPath}/`));
}

/** Kubernetes' label-selector semantics, to ask which pods each webhook entry would be sent. */
function selects(selector: Selector, labels: Record<string, string>): boolean {
  const byLabels = Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  const byExpressions = (selector.matchExpressions ?? []).every((e) => {
    const v = labels[e.key];
    switch (e.operator) {
      case 'In': return v !== undefined && (e.values ?? []).includes(v);
      case 'NotIn': return v === undefined || !(e.values ?? []).includes(v);
      case 'Exists': return v !== undefined;
      case 'DoesNotExist': return v === undefined;
      default: throw new Error(`unknown operator ${e.operator}`);
    }
  });
  return byLabels && byExpressions;
}
function injected(objects: K8sObject[], namespace: string, nsLabels: Record<string, string>, podLabels: Record<string, string>): string[] {
  const ns = { ...nsLabels, 'kubernetes.io/metadata.name': namespace };
  return webhooks(objects).filter((w) => selects(w.namespaceSelector, ns) && selects(w.objectSelector, podLabels)).map((w) => w.name);
}

const dir = mkdtempSync(join(tmpdir(), 'airlock-chart-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function valuesFile(name: string, values: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, stringify(values));
  return path;
}
const haValues = join(chartDir, 'values-ha.yaml');
const etcdValues = valuesFile('etcd.yaml', { store: { type: 'etcd', etcd: { endpoints: ['https://etcd-a:2379', 'https://etcd-b:2379'], tlsSecret: 'etcd-client' } } });
const pki = createOperatorPki();
const byoValues = valuesFile('byo-ca.yaml', { ca: { source: 'provided', provided: { cert: pki.intermediate.certPem, key: pki.intermediate.keyPem, bundle: pki.root.certPem } } });
const policyValues = valuesFile('policy.yaml', {
  policy: {
    segments: [
      { name: 'planners', selector: { namespace: 'agents', serviceAccounts: ['planner'] } },
      { name: 'researchers', selector: { namespace: 'agents', serviceAccounts: ['research-*'] } },
    ],
    policies: [{ name: 'planners-to-researchers', from: { segments: ['planners'] }, to: { segments: ['researchers'], ports: [8080] }, rules: [{ methods: ['GET', 'POST'], paths: ['/v1/*'] }], action: 'allow' }],
  },
});

const sinkValues = valuesFile('audit-sinks.yaml', {
  audit: {
    spool: { maxBytes: 1024 ** 3, full: 'fail-closed' },
    http: { url: 'https://hec.siem.example:8088/services/collector/raw', tokenSecret: 'hec-token', caSecret: 'siem-ca' },
    syslog: { address: 'syslog.siem.example:6514', serverName: 'collector.siem.example', tlsSecret: 'siem-syslog', clientCertificate: true, resendEvents: 5000 },
  },
});

describe('helm lint --strict', () => {
  it.each([
    ['default values', []],
    ['values-ha.yaml', [haValues]],
    ['etcd values', [etcdValues]],
    ['bring-your-own-CA values', [byoValues]],
    ['segments and policies', [policyValues]],
    ['audit sinks', [sinkValues]],
  ])('passes with %s', (_name, files) => {
    const r = lintStrict({ files });
    expect(r.stderr + r.stdout).not.toMatch(/\[(ERROR|WARNING)\]/);
    expect(r.status).toBe(0);
  });
});

describe('the chart with default values', () => {
  const objects = renderChart();

  it('runs the control plane non-root, read-only, with no privilege and no capability', () => {
    const pod = podSpec(objects);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    const c = container(objects);
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, runAsNonRoot: true, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } });
    expect(c.securityContext.capabilities).not.toHaveProperty('add');
    // Only the data dir and /tmp are writable.
    expect(c.volumeMounts.filter((m) => m.readOnly !== true).map((m) => m.mountPath).sort()).toEqual(['/tmp', '/var/lib/airlock']);
    expect(c.resources.requests).toMatchObject({ cpu: '100m', memory: '128Mi' });
    expect(c.resources.limits).toMatchObject({ memory: '512Mi' });
  });

  it('runs the control plane with two malloc arenas (docs/soak.md)', () => {
    expect(container(objects).env).toContainEqual({ name: 'MALLOC_ARENA_MAX', value: '2' });
  });

  it('probes /healthz and /readyz on the plain HTTP port, and serves the contract ports', () => {
    const c = container(objects);
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http-metrics' });
    expect(c.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'http-metrics' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http-metrics' });
    expect(Object.fromEntries(c.ports.map((p) => [p.name, p.containerPort]))).toEqual({ grpc: 15012, admin: 15013, 'http-metrics': 15014, webhook: 15017 });
    expect(c.args.slice(0, 2)).toEqual(['control-plane', '--config']);
  });

  it('runs one replica on sqlite, replaced (not rolled) so two never write the file', () => {
    const deployment = find(objects, 'Deployment');
    expect(dig(deployment, 'spec', 'replicas')).toBe(1);
    expect(dig(deployment, 'spec', 'strategy', 'type')).toBe('Recreate');
    const claim = find(objects, 'PersistentVolumeClaim');
    expect(podSpec(objects).volumes.find((v) => v.name === 'data')?.persistentVolumeClaim?.claimName).toBe(claim.metadata.name);
    expect(mountOf(container(objects), `${String(settings(objects).dataDir)}/x`)?.name).toBe('data');
    expect(settings(objects)).not.toHaveProperty('store');
  });

  it('grants the control plane nothing but creating TokenReviews', () => {
    const roles = [...all(objects, 'ClusterRole'), ...all(objects, 'Role')];
    expect(roles).toHaveLength(1);
    expect(dig(roles[0], 'rules')).toEqual([{ apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] }]);
    const binding = find(objects, 'ClusterRoleBinding');
    expect(dig(binding, 'roleRef', 'name')).toBe(roles[0]?.metadata.name);
    expect(dig(binding, 'subjects')).toEqual([{ kind: 'ServiceAccount', name: podSpec(objects).serviceAccountName, namespace: RELEASE_NAMESPACE }]);
    expect(all(objects, 'RoleBinding')).toHaveLength(0);
    expect(find(objects, 'ServiceAccount').metadata.name).toBe(podSpec(objects).serviceAccountName);
  });

  it('has a Service for every port and a headless one that lists every replica for sidecars', () => {
    const podLabels = dig(find(objects, 'Deployment'), 'spec', 'template', 'metadata', 'labels') as Record<string, string>;
    const services = all(objects, 'Service');
    expect(services).toHaveLength(2);
    for (const s of services) expect(selects({ matchLabels: dig(s, 'spec', 'selector') as Record<string, string> }, podLabels)).toBe(true);
    const headless = services.find((s) => dig(s, 'spec', 'clusterIP') === 'None');
    expect(dig(headless, 'spec', 'ports')).toMatchObject([{ name: 'grpc', port: 15012 }]);
    const main = services.find((s) => s !== headless);
    expect((dig(main, 'spec', 'ports') as { port: number }[]).map((p) => p.port)).toEqual([15012, 15013, 15014, 15017]);
    // The injected sidecars dial the headless name.
    const injection = parse(configMapData(objects)['injection.yaml'] ?? '') as Record<string, unknown>;
    expect(injection.controlPlane).toBe(`${headless?.metadata.name}.${RELEASE_NAMESPACE}.svc:15012`);
  });

  it('has a PodDisruptionBudget over the control-plane pods, and a NetworkPolicy opening only its ports', () => {
    const podLabels = dig(find(objects, 'Deployment'), 'spec', 'template', 'metadata', 'labels') as Record<string, string>;
    const pdb = find(objects, 'PodDisruptionBudget');
    expect(dig(pdb, 'spec', 'maxUnavailable')).toBe(1);
    expect(selects(dig(pdb, 'spec', 'selector') as Selector, podLabels)).toBe(true);
    const np = find(objects, 'NetworkPolicy');
    expect(dig(np, 'spec', 'policyTypes')).toEqual(['Ingress']);
    expect((dig(np, 'spec', 'ingress') as { ports: { port: string }[] }[]).flatMap((r) => r.ports.map((p) => p.port))).toEqual(['grpc', 'admin', 'http-metrics', 'webhook']);
    expect(all(objects, 'HorizontalPodAutoscaler')).toHaveLength(0);
  });

  it('renders only settings the control plane knows, with files where the pod mounts them', () => {
    const rendered = settings(objects);
    const known = Object.keys(controlPlaneConfig.schema);
    expect(Object.keys(rendered).filter((k) => !known.includes(k))).toEqual([]);
    const config = controlPlaneConfig.load({ file: { path: 'config.yaml', text: stringify(rendered) } });
    expect(config).toMatchObject({ trustDomain: 'airlock.local', kubernetesApiServer: 'https://kubernetes.default.svc', grpcListen: { port: 15012 }, httpListen: { port: 15014 }, svidTtl: 3_600_000 });
    const c = container(objects);
    expect(c.args).toEqual(['control-plane', '--config', expect.any(String)]);
    for (const path of [c.args[2], config.caCertFile, config.caKeyFile, config.caBundleFile, rendered.injectionConfigFile]) {
      expect(mountOf(c, String(path)), `${String(path)} is mounted`).toBeDefined();
    }
    expect(rendered.injectionListen).toBe('0.0.0.0:15017');
    expect(String(rendered.serverDnsNames).split(',')).toContain(`airlock-control-plane.${RELEASE_NAMESPACE}.svc`);
    expect(rendered).not.toHaveProperty('policyFile');
  });

  it('gives the injector the template the contract names, and nothing else', () => {
    const injection = parse(configMapData(objects)['injection.yaml'] ?? '') as Record<string, unknown>;
    expect(Object.keys(injection).sort()).toEqual(['controlPlane', 'image', 'imagePullPolicy', 'logLevel', 'proxyInitImage', 'resources', 'tokenAudience', 'tokenExpirationSeconds', 'transparent', 'trustDomain']);
    expect(injection).toMatchObject({ image: 'ghcr.io/airlock-dev/airlock:0.1.0', tokenAudience: 'airlock', tokenExpirationSeconds: 600, transparent: false, trustDomain: 'airlock.local' });
  });

  it('generates a CA the control plane loads, and the webhook trusts exactly it', () => {
    const ca = secretData(objects, 'airlock-ca');
    expect(ca['ca.crt']).toBe(ca['tls.crt']);
    const loaded = CertificateAuthority.fromOperator('airlock.local', ca['tls.crt'] ?? '', ca['tls.key'] ?? '');
    expect(loaded.issueServingCertificate('spiffe://airlock.local/ns/airlock-system/sa/airlock-control-plane', 60_000).chainPem).toContain('BEGIN CERTIFICATE');
    for (const w of webhooks(objects)) expect(Buffer.from(w.clientConfig.caBundle ?? '', 'base64').toString('utf8')).toBe(ca['ca.crt']);
    // The pods restart when the CA changes.
    const annotations = dig(find(objects, 'Deployment'), 'spec', 'template', 'metadata', 'annotations') as Record<string, string>;
    expect(annotations['checksum/ca']).toBe(createHash('sha256').update(ca['tls.crt'] ?? '').digest('hex'));
    expect(podSpec(objects).volumes.find((v) => v.name === 'ca')?.secret).toMatchObject({ secretName: 'airlock-ca', defaultMode: 0o440 });
  });

  it('sends the webhook only pods of labelled namespaces or labelled pods, never the control plane’s own, and fails closed', () => {
    for (const w of webhooks(objects)) {
      expect(w.failurePolicy).toBe('Fail');
      expect(w.sideEffects).toBe('None');
      expect(w.clientConfig.service).toEqual({ name: 'airlock-control-plane', namespace: RELEASE_NAMESPACE, port: 15017, path: '/inject' });
    }
    const enabled = { 'airlock.dev/inject': 'enabled' };
    const disabled = { 'airlock.dev/inject': 'disabled' };
    expect(injected(objects, 'agents', enabled, {})).toEqual(['namespace.inject.airlock.dev']);
    expect(injected(objects, 'agents', enabled, enabled)).toEqual(['namespace.inject.airlock.dev']);
    expect(injected(objects, 'agents', enabled, disabled)).toEqual([]);
    expect(injected(objects, 'apps', {}, enabled)).toEqual(['pod.inject.airlock.dev']);
    expect(injected(objects, 'apps', {}, {})).toEqual([]);
    expect(injected(objects, 'apps', {}, { 'airlock.dev/inject': 'Enabled' })).toEqual([]);
    expect(injected(objects, 'apps', disabled, enabled)).toEqual([]);
    // The release namespace, even labelled, and the control plane's own pods anywhere.
    const cpLabels = dig(find(objects, 'Deployment'), 'spec', 'template', 'metadata', 'labels') as Record<string, string>;
    expect(injected(objects, RELEASE_NAMESPACE, enabled, {})).toEqual([]);
    expect(injected(objects, RELEASE_NAMESPACE, {}, enabled)).toEqual([]);
    expect(injected(objects, 'agents', enabled, cpLabels)).toEqual([]);
    for (const ns of ['kube-system', 'kube-public', 'kube-node-lease']) expect(injected(objects, ns, enabled, enabled)).toEqual([]);
  });

  it('excludes the namespace it is installed in, whatever that is', () => {
    const other = renderChart({ release: 'mesh', namespace: 'mesh-system' });
    const enabled = { 'airlock.dev/inject': 'enabled' };
    expect(injected(other, 'mesh-system', enabled, {})).toEqual([]);
    expect(injected(other, 'mesh-system', {}, enabled)).toEqual([]);
    expect(injected(other, RELEASE_NAMESPACE, enabled, {})).toEqual(['namespace.inject.airlock.dev']);
    for (const w of webhooks(other)) expect(w.clientConfig.service).toMatchObject({ name: 'mesh-airlock-control-plane', namespace: 'mesh-system' });
  });
});

describe('the chart with values-ha.yaml', () => {
  const objects = renderChart({ files: [haValues] });

  it('runs three replicas on etcd, rolled one at a time, spread over nodes', () => {
    const deployment = find(objects, 'Deployment');
    expect(dig(deployment, 'spec', 'replicas')).toBe(3);
    expect(dig(deployment, 'spec', 'strategy')).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
    expect(dig(podSpec(objects), 'affinity', 'podAntiAffinity')).toBeDefined();
    expect(settings(objects)).toMatchObject({ store: 'etcd://etcd-0.etcd.etcd.svc:2379,etcd-1.etcd.etcd.svc:2379,etcd-2.etcd.etcd.svc:2379' });
    expect(all(objects, 'PersistentVolumeClaim')).toHaveLength(0);
    expect(dig(find(objects, 'PodDisruptionBudget'), 'spec', 'maxUnavailable')).toBe(1);
  });

  it('may autoscale', () => {
    const hpa = find(renderChart({ files: [haValues], set: ['autoscaling.enabled=true'] }), 'HorizontalPodAutoscaler');
    expect(dig(hpa, 'spec', 'maxReplicas')).toBe(5);
    expect(dig(hpa, 'spec', 'scaleTargetRef', 'name')).toBe('airlock-control-plane');
  });
});

describe('the chart with audit sinks', () => {
  const objects = renderChart({ files: [sinkValues] });

  it('renders both sinks as settings the control plane loads, their secrets as files of the named Secrets, read-only', () => {
    const rendered = settings(objects);
    const config = controlPlaneConfig.load({ file: { path: 'config.yaml', text: stringify(rendered) } });
    expect(config).toMatchObject({
      auditSpoolMaxBytes: 1024 ** 3,
      auditSpoolFull: 'fail-closed',
      auditHttpUrl: 'https://hec.siem.example:8088/services/collector/raw',
      auditSyslogAddress: { host: 'syslog.siem.example', port: 6514 },
      auditSyslogServerName: 'collector.siem.example',
      auditSyslogResendEvents: 5000,
    });
    const c = container(objects);
    const volumes = podSpec(objects).volumes as (PodSpec['volumes'][number] & { projected?: { sources: { secret: { name: string; items: { key: string; path: string }[] } }[] } })[];
    const secretOf = (path: string): string | undefined => {
      const mount = mountOf(c, path);
      expect(mount?.readOnly, `${path} is mounted read-only`).toBe(true);
      const v = volumes.find((x) => x.name === mount?.name);
      const file = path.slice((mount?.mountPath.length ?? 0) + 1);
      return v?.secret?.secretName ?? v?.projected?.sources.find((s) => s.secret.items.some((i) => i.path === file))?.secret.name;
    };
    expect(secretOf(String(config.auditHttpTokenFile))).toBe('hec-token');
    expect(secretOf(String(config.auditHttpCaFile))).toBe('siem-ca');
    for (const key of ['auditSyslogCaFile', 'auditSyslogCertFile', 'auditSyslogKeyFile'] as const) expect(secretOf(String(config[key]))).toBe('siem-syslog');
  });

  it('renders no sink by default: the spool settings only', () => {
    const rendered = settings(renderChart());
    expect(Object.keys(rendered).filter((k) => k.startsWith('audit'))).toEqual(['auditSpoolFull', 'auditSpoolMaxBytes']);
  });
});

describe('the chart with an etcd store', () => {
  const objects = renderChart({ files: [etcdValues] });

  it('renders the endpoints and the client TLS files from the Secret', () => {
    const rendered = settings(objects);
    expect(rendered).toMatchObject({ store: 'etcd://etcd-a:2379,etcd-b:2379' });
    expect(controlPlaneConfig.load({ file: { path: 'config.yaml', text: stringify(rendered) } }).store).toBe('etcd://etcd-a:2379,etcd-b:2379');
    const c = container(objects);
    for (const key of ['etcdCaFile', 'etcdCertFile', 'etcdKeyFile']) {
      const mount = mountOf(c, String(rendered[key]));
      expect(mount?.readOnly).toBe(true);
      expect(podSpec(objects).volumes.find((v) => v.name === mount?.name)?.secret?.secretName).toBe('etcd-client');
    }
    expect(podSpec(objects).volumes.find((v) => v.name === 'data')?.emptyDir).toBeDefined();
  });
});

describe('the chart with a CA brought by the operator', () => {
  it('keeps the CA Secret byte for byte across renders, and the webhook trusts the operator root', () => {
    const first = renderChart({ files: [byoValues] });
    const second = renderChart({ files: [byoValues] });
    expect(find(second, 'Secret', 'airlock-ca')).toEqual(find(first, 'Secret', 'airlock-ca'));
    const ca = secretData(first, 'airlock-ca');
    expect(ca).toEqual({ 'tls.crt': pki.intermediate.certPem, 'tls.key': pki.intermediate.keyPem, 'ca.crt': pki.root.certPem });
    for (const w of webhooks(first)) expect(Buffer.from(w.clientConfig.caBundle ?? '', 'base64').toString('utf8')).toBe(pki.root.certPem);
    const checksum = (o: K8sObject[]): unknown => dig(find(o, 'Deployment'), 'spec', 'template', 'metadata', 'annotations', 'checksum/ca');
    expect(checksum(second)).toBe(checksum(first));
  });

  it('mounts an existing Secret and renders none, with the caBundle given', () => {
    const objects = renderChart({ set: ['ca.source=existingSecret', 'ca.existingSecret=my-mesh-ca', `webhook.caBundle=${pki.root.certPem.replaceAll(',', '\\,')}`] });
    expect(all(objects, 'Secret')).toHaveLength(0);
    expect(podSpec(objects).volumes.find((v) => v.name === 'ca')?.secret?.secretName).toBe('my-mesh-ca');
    for (const w of webhooks(objects)) expect(Buffer.from(w.clientConfig.caBundle ?? '', 'base64').toString('utf8')).toBe(pki.root.certPem);
  });

  it('asks cert-manager for the CA and lets its CA injector fill the caBundle', () => {
    const objects = renderChart({ set: ['ca.source=certManager', 'ca.certManager.issuerRef.name=mesh-root'] });
    const cert = find(objects, 'Certificate');
    expect(dig(cert, 'spec')).toMatchObject({ isCA: true, secretName: 'airlock-ca', privateKey: { algorithm: 'RSA' }, issuerRef: { name: 'mesh-root', kind: 'ClusterIssuer' } });
    expect(all(objects, 'Secret')).toHaveLength(0);
    expect(find(objects, 'MutatingWebhookConfiguration').metadata.annotations).toEqual({ 'cert-manager.io/inject-ca-from': `${RELEASE_NAMESPACE}/airlock-ca` });
    for (const w of webhooks(objects)) expect(w.clientConfig.caBundle).toBeUndefined();
  });
});

describe('the chart with a control plane outside the cluster', () => {
  it('points the webhook at the URL, trusting the chart CA', () => {
    const objects = renderChart({ set: ['webhook.url=https://127.0.0.1:15017/inject'] });
    const ca = secretData(objects, 'airlock-ca');
    for (const w of webhooks(objects)) {
      expect(w.clientConfig.url).toBe('https://127.0.0.1:15017/inject');
      expect(w.clientConfig.service).toBeUndefined();
      expect(Buffer.from(w.clientConfig.caBundle ?? '', 'base64').toString('utf8')).toBe(ca['ca.crt']);
    }
    // 127.0.0.1 is in every serving certificate already; a DNS name is not, so the chart adds it.
    expect(String(settings(objects).serverDnsNames).split(',')).not.toContain('127.0.0.1');
    const named = settings(renderChart({ set: ['webhook.url=https://Airlock.Example.com:15017/inject'] }));
    expect(String(named.serverDnsNames).split(',')).toContain('airlock.example.com');
  });
});

describe('segments and policies from values', () => {
  const objects = renderChart({ files: [policyValues] });

  it('are Segment and Policy documents the control plane accepts, applied at start', () => {
    const rendered = settings(objects);
    const policyFile = String(rendered.policyFile);
    const c = container(objects);
    const mount = mountOf(c, policyFile);
    expect(mount?.readOnly).toBe(true);
    const volume = podSpec(objects).volumes.find((v) => v.name === mount?.name);
    expect(volume?.configMap?.items).toEqual([{ key: 'policy.yaml', path: policyFile.slice(dirname(policyFile).length + 1) }]);
    const docs = parsePolicyText(configMapData(objects)['policy.yaml'] ?? '', 'policy.yaml');
    expect(docs.segments.map((s) => s.name)).toEqual(['planners', 'researchers']);
    expect(docs.policies.map((p) => p.name)).toEqual(['planners-to-researchers']);
  });
});

describe('monitoring', () => {
  it('scrapes the control plane through one Service and alerts on Airlock metrics', () => {
    const objects = renderChart({ set: ['metrics.serviceMonitor.enabled=true', 'metrics.prometheusRule.enabled=true'] });
    const sm = find(objects, 'ServiceMonitor');
    expect(dig(sm, 'spec', 'endpoints')).toMatchObject([{ port: 'http-metrics', path: '/metrics' }]);
    const scraped = all(objects, 'Service').filter((s) => selects(dig(sm, 'spec', 'selector') as Selector, s.metadata.labels ?? {}));
    expect(scraped.map((s) => s.metadata.name)).toEqual(['airlock-control-plane']);
    const rules = JSON.stringify(dig(find(objects, 'PrometheusRule'), 'spec'));
    for (const metric of ['airlock_control_plane_certificate_expiry_timestamp_seconds', 'airlock_ca_issuance_refused_total', 'airlock_ca_renewal_failures_total', 'airlock_authz_refused_total']) expect(rules).toContain(metric);
  });
});
