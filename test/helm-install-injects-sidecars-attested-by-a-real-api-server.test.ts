// The chart README's steps, run against a real kube-apiserver (test/support/kube-apiserver.ts): the
// README's own `helm install`, namespace label, policy values + `helm upgrade`, metrics and
// `helm uninstall` lines are read from charts/airlock/README.md and run here, so the two cannot drift.
// The control plane runs as a local process with the configuration the API server stored, the API
// server calls its injection webhook (webhook.url), and sidecars started from the stored pods' own
// container specs are attested by TokenReview against the same API server.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { boundPort, closeServer } from '@airlock/common/net';
import { startEchoApp, type EchoBody } from '../cli/src/demo/echo-app.ts';
import { spawnAirlock, waitReady, type AirlockProcess } from '../cli/src/demo/processes.ts';
import { chartDir, helm, type K8sObject } from './support/helm-chart.ts';
import { startKubeApiServer, type KubeApiServer } from './support/kube-apiserver.ts';
import { createOperatorPki } from './support/operator-ca.ts';
import { freePort } from './support/ports.ts';
import { viaProxy } from './support/proxy-client.ts';

const AIRLOCK_BIN = join(import.meta.dirname, '..', 'cli', 'bin', 'airlock.js');
/** A name the API server resolves to the host end of its veth (kube-apiserver.ts), where the control plane serves the webhook. */
const WEBHOOK_HOST = 'airlock-webhook.test';

// ---- The chart README's steps, as written there ----
const README = readFileSync(join(chartDir, 'README.md'), 'utf8');

/** The argv of the first `$ <prefix>…` console line of the README (backslash continuations joined). */
function readmeCommand(prefix: string): string[] {
  const lines = README.replace(/\\\n\s*/g, '').split('\n');
  const line = lines.find((l) => l.startsWith(`$ ${prefix}`));
  if (line === undefined) throw new Error(`charts/airlock/README.md has no "$ ${prefix}" line`);
  return line.slice(2).split('#')[0]?.trim().split(/\s+/) ?? [];
}

/** A README helm line as run here: the chart from this checkout, the test's values file and kubeconfig. */
function helmArgs(prefix: string, valuesFile: string, kubeconfig: string): string[] {
  const [tool, ...args] = readmeCommand(prefix);
  expect(tool).toBe('helm');
  return [...args.map((a) => (a === 'charts/airlock' ? chartDir : a === 'my-values.yaml' ? valuesFile : a)), '--kubeconfig', kubeconfig];
}

/** The values of the README's step 3 (its first yaml block after "## 3."). */
function readmePolicyValues(): Record<string, unknown> {
  const block = /```yaml\n([\s\S]*?)```/.exec(README.slice(README.indexOf('## 3.')))?.[1];
  if (block === undefined) throw new Error('charts/airlock/README.md step 3 has no yaml block');
  return parse(block) as Record<string, unknown>;
}

// ---- Kubernetes objects, loosely typed: the test reads the fields it asserts ----
interface EnvVar { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  restartPolicy?: string;
  securityContext?: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string }[];
}
interface Volume {
  name: string;
  configMap?: { name: string; items: { key: string; path: string }[] };
  secret?: { secretName: string; items: { key: string; path: string }[] };
  projected?: { sources: { serviceAccountToken?: { audience?: string; expirationSeconds?: number; path: string } }[] };
}
interface Pod {
  metadata: { name: string; namespace: string; uid: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: { serviceAccountName: string; containers: Container[]; initContainers?: Container[]; volumes?: Volume[] };
}
interface Deployment {
  spec: { template: { metadata: { annotations: Record<string, string> }; spec: { serviceAccountName: string; containers: Container[]; volumes: Volume[] } } };
}

/** Where the API server keeps an object of one of the kinds the chart renders. */
const RESOURCES: Record<string, { plural: string; namespaced: boolean }> = {
  ConfigMap: { plural: 'configmaps', namespaced: true },
  Secret: { plural: 'secrets', namespaced: true },
  ServiceAccount: { plural: 'serviceaccounts', namespaced: true },
  Service: { plural: 'services', namespaced: true },
  PersistentVolumeClaim: { plural: 'persistentvolumeclaims', namespaced: true },
  Deployment: { plural: 'deployments', namespaced: true },
  PodDisruptionBudget: { plural: 'poddisruptionbudgets', namespaced: true },
  NetworkPolicy: { plural: 'networkpolicies', namespaced: true },
  ClusterRole: { plural: 'clusterroles', namespaced: false },
  ClusterRoleBinding: { plural: 'clusterrolebindings', namespaced: false },
  MutatingWebhookConfiguration: { plural: 'mutatingwebhookconfigurations', namespaced: false },
  HorizontalPodAutoscaler: { plural: 'horizontalpodautoscalers', namespaced: true },
};

function objectPath(o: K8sObject, namespace: string): string {
  const r = RESOURCES[o.kind];
  if (r === undefined) throw new Error(`the chart rendered a ${o.kind}: add where the API server keeps it to RESOURCES`);
  const group = o.apiVersion === 'v1' ? '/api/v1' : `/apis/${o.apiVersion}`;
  return `${group}${r.namespaced ? `/namespaces/${o.metadata.namespace ?? namespace}` : ''}/${r.plural}/${o.metadata.name}`;
}

/** Every field the chart set, as stored: the paths where the stored object says something else (or nothing). */
function alteredFields(rendered: unknown, stored: unknown, path = ''): string[] {
  if (Array.isArray(rendered)) {
    if (!Array.isArray(stored) || stored.length !== rendered.length) return [`${path}: ${JSON.stringify(rendered)} stored as ${JSON.stringify(stored)}`];
    return rendered.flatMap((r, i) => alteredFields(r, stored[i], `${path}[${i}]`));
  }
  if (rendered !== null && typeof rendered === 'object') {
    if (stored === null || typeof stored !== 'object') return [`${path}: stored as ${JSON.stringify(stored)}`];
    return Object.entries(rendered).flatMap(([k, v]) => alteredFields(v, (stored as Record<string, unknown>)[k], `${path}.${k}`));
  }
  return rendered === stored ? [] : [`${path}: ${JSON.stringify(rendered)} stored as ${JSON.stringify(stored)}`];
}

function envOf(c: Container): Record<string, string | undefined> {
  return Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
}

/** A sum of the control plane's counter samples whose line matches `labels` (a regexp of the label set). */
function counter(metrics: string, name: string, labels = ''): number {
  return [...metrics.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\d+)$`, 'gm'))]
    .filter((m) => new RegExp(labels).test(m[1] ?? ''))
    .reduce((sum, m) => sum + Number(m[2]), 0);
}

describe('the chart, installed by its README into a real Kubernetes API server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-helm-e2e-'));
  const valuesFile = join(dir, 'my-values.yaml');
  const processes: AirlockProcess[] = [];
  const apps: Server[] = [];
  let kube: KubeApiServer;
  let webhookPort = 0;
  let release = '';
  let namespace = '';
  let agentsNamespace = '';
  let injectLabel: [string, string] = ['', ''];
  let installed: K8sObject[] = [];
  let controlPlane = { grpcPort: 0, httpPort: 0, adminPort: 0, dataDir: '' };

  const stored = <T>(path: string): Promise<T> => kube.json<T>('GET', path);
  const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${controlPlane.httpPort}/metrics`)).text();
  const webhookCalls = async (): Promise<number> => counter(await metrics(), 'airlock_injection_requests_total');

  function runHelm(args: string[]): string {
    const r = helm(args);
    expect(r.status, `helm ${args.join(' ')}\n${r.stderr}`).toBe(0);
    return r.stdout;
  }

  async function expectGone(objects: readonly K8sObject[], ns: string): Promise<void> {
    for (const o of objects) {
      const res = await kube.request<{ metadata?: { deletionTimestamp?: string; finalizers?: string[] } }>('GET', objectPath(o, ns));
      if (o.kind === 'PersistentVolumeClaim') {
        // No controller manager runs here: the pvc-protection controller would remove its finalizer
        // (no pod uses the claim) and the claim would go. It is marked deleted, held by that alone.
        expect(res.body.metadata?.deletionTimestamp).toBeDefined();
        expect(res.body.metadata?.finalizers).toEqual(['kubernetes.io/pvc-protection']);
      } else {
        expect(res.status, `${ns}: ${o.kind}/${o.metadata.name}`).toBe(404);
      }
    }
  }

  function manifest(ns = namespace): K8sObject[] {
    return parseAllDocuments(runHelm(['get', 'manifest', release, '--namespace', ns, '--kubeconfig', kube.kubeconfig]))
      .map((d) => d.toJS() as K8sObject | null)
      .filter((d): d is K8sObject => d !== null);
  }

  beforeAll(async () => {
    kube = await startKubeApiServer({ hostNames: [WEBHOOK_HOST] });
    // The control plane serves the webhook on the host end of the veth, the one address the API server can reach.
    webhookPort = await freePort(kube.hostAddress);
    // What a control plane outside the cluster needs (README "Outside the cluster"); step 3 adds the policy.
    writeFileSync(valuesFile, stringify({ webhook: { url: `https://${WEBHOOK_HOST}:${webhookPort}/inject` } }));
  }, 150_000);

  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await Promise.all(apps.map((a) => closeServer(a)));
    await (kube as KubeApiServer | undefined)?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('1. install: the API server accepts every object and stores every field as the chart rendered it', async () => {
    const args = helmArgs('helm install', valuesFile, kube.kubeconfig);
    release = args[1] ?? '';
    namespace = args[args.indexOf('--namespace') + 1] ?? '';
    expect([release, namespace]).toEqual(['airlock', 'airlock-system']);
    runHelm([...args, '-f', valuesFile]);

    installed = manifest();
    expect(installed.map((o) => o.kind).sort()).toEqual([
      'ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'Deployment', 'MutatingWebhookConfiguration', 'NetworkPolicy',
      'PersistentVolumeClaim', 'PodDisruptionBudget', 'Secret', 'Service', 'Service', 'ServiceAccount',
    ]);
    for (const o of installed) {
      // Defaulting adds fields; it must not drop or change one the chart set (a security context, a selector, a probe).
      expect(alteredFields(o, await stored(objectPath(o, namespace))), `${o.kind}/${o.metadata.name}`).toEqual([]);
    }

    // What matters most, read back: the webhook fails closed, never sees the release namespace, trusts the chart's CA.
    const webhook = await stored<{ webhooks: { name: string; failurePolicy: string; clientConfig: { url: string; caBundle: string }; namespaceSelector: unknown }[] }>(
      `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/airlock-sidecar-injector-${namespace}`,
    );
    const ca = await stored<{ data: Record<string, string> }>(`/api/v1/namespaces/${namespace}/secrets/airlock-ca`);
    expect(webhook.webhooks.map((w) => [w.name, w.failurePolicy, w.clientConfig.url, w.clientConfig.caBundle])).toEqual([
      ['namespace.inject.airlock.dev', 'Fail', `https://${WEBHOOK_HOST}:${webhookPort}/inject`, ca.data['ca.crt']],
      ['pod.inject.airlock.dev', 'Fail', `https://${WEBHOOK_HOST}:${webhookPort}/inject`, ca.data['ca.crt']],
    ]);
    expect(JSON.stringify(webhook.webhooks[0]?.namespaceSelector)).toContain(`"NotIn","values":["${namespace}"`);
    const deployment = await stored<Deployment>(`/apis/apps/v1/namespaces/${namespace}/deployments/airlock-control-plane`);
    expect(deployment.spec.template.spec.containers[0]?.securityContext).toEqual({
      allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, runAsNonRoot: true, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' },
    });
  });

  it('2. label a namespace: the README\'s label, on a namespace that enforces the restricted Pod Security Standard', async () => {
    const [tool, verb, kind, name, label] = readmeCommand('kubectl label namespace');
    expect([tool, verb, kind]).toEqual(['kubectl', 'label', 'namespace']);
    agentsNamespace = name ?? '';
    injectLabel = (label ?? '').split('=') as [string, string];
    expect(injectLabel).toEqual(['airlock.dev/inject', 'enabled']);
    // Restricted is enforced on the injected pod (PodSecurity admission runs after mutating webhooks).
    await kube.createNamespace(agentsNamespace, { [injectLabel[0]]: injectLabel[1], 'pod-security.kubernetes.io/enforce': 'restricted' });
    await kube.createServiceAccount(agentsNamespace, 'planner');
    await kube.createServiceAccount(agentsNamespace, 'research-web');
  });

  it('3. apply policy from values: helm upgrade changes the configuration and keeps the CA', async () => {
    const before = manifest();
    const caBefore = await stored<{ data: Record<string, string> }>(`/api/v1/namespaces/${namespace}/secrets/airlock-ca`);
    const checksumBefore = (await stored<Deployment>(`/apis/apps/v1/namespaces/${namespace}/deployments/airlock-control-plane`)).spec.template.metadata.annotations['checksum/config'];
    writeFileSync(valuesFile, stringify({ ...(parse(readFileSync(valuesFile, 'utf8')) as object), ...readmePolicyValues() }));
    runHelm(helmArgs('helm upgrade', valuesFile, kube.kubeconfig));

    const after = manifest();
    expect(after.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual(before.map((o) => `${o.kind}/${o.metadata.name}`));
    for (const o of after) expect(alteredFields(o, await stored(objectPath(o, namespace))), `${o.kind}/${o.metadata.name}`).toEqual([]);
    expect((await stored<{ data: Record<string, string> }>(`/api/v1/namespaces/${namespace}/secrets/airlock-ca`)).data).toEqual(caBefore.data);
    const configMap = await stored<{ data: Record<string, string> }>(`/api/v1/namespaces/${namespace}/configmaps/airlock-control-plane`);
    expect(parse(configMap.data['config.yaml'] ?? '')).toMatchObject({ policyFile: '/etc/airlock/policy/policy.yaml' });
    expect(configMap.data['policy.yaml']).toContain('name: "planners-to-researchers"');
    const checksumAfter = (await stored<Deployment>(`/apis/apps/v1/namespaces/${namespace}/deployments/airlock-control-plane`)).spec.template.metadata.annotations['checksum/config'];
    expect(checksumAfter).not.toBe(checksumBefore);
  });

  it('the control plane runs locally with the configuration the API server stored', async () => {
    const deployment = await stored<Deployment>(`/apis/apps/v1/namespaces/${namespace}/deployments/airlock-control-plane`);
    const pod = deployment.spec.template.spec;
    const container = pod.containers[0] as Container;
    expect(container.args).toEqual(['control-plane', '--config', '/etc/airlock/config/config.yaml']);
    // The pod's volumes, written where the test can read them: each mountPath maps to a local directory
    // holding the items the kubelet would project from the stored ConfigMap and Secret.
    const mounts = new Map<string, string>();
    for (const m of container.volumeMounts ?? []) {
      const local = join(dir, 'volumes', m.name);
      mkdirSync(local, { recursive: true });
      mounts.set(m.mountPath, local);
      const v = pod.volumes.find((x) => x.name === m.name);
      if (v?.configMap !== undefined) {
        const cm = await stored<{ data: Record<string, string> }>(`/api/v1/namespaces/${namespace}/configmaps/${v.configMap.name}`);
        for (const item of v.configMap.items) writeFileSync(join(local, item.path), cm.data[item.key] ?? '');
      } else if (v?.secret !== undefined) {
        const secret = await stored<{ data: Record<string, string> }>(`/api/v1/namespaces/${namespace}/secrets/${v.secret.secretName}`);
        for (const item of v.secret.items) writeFileSync(join(local, item.path), Buffer.from(secret.data[item.key] ?? '', 'base64'), { mode: 0o600 });
      }
    }
    const local = (path: string): string => {
      for (const [mountPath, to] of mounts) if (path.startsWith(`${mountPath}/`)) return join(to, path.slice(mountPath.length + 1));
      if (mounts.has(path)) return mounts.get(path) ?? path;
      throw new Error(`${path} is on no volume of the control-plane pod`);
    };
    const rendered = parse(readFileSync(local('/etc/airlock/config/config.yaml'), 'utf8')) as Record<string, unknown>;

    // The control plane's own service-account token, as the kubelet would mount it: the chart's
    // ServiceAccount (bound by the chart's ClusterRole to create tokenreviews), default audience.
    const saDir = join(dir, 'volumes', 'kube-api-access');
    mkdirSync(saDir, { recursive: true });
    writeFileSync(join(saDir, 'token'), await kube.tokenRequest(namespace, pod.serviceAccountName, { audiences: [kube.issuer] }));
    expect(pod.serviceAccountName).toBe('airlock-control-plane');

    // Rewritten, because they cannot be the in-cluster ones here:
    // - every file path (caCertFile, caKeyFile, caBundleFile, policyFile, injectionConfigFile, dataDir):
    //   the same file under the local directory of its volume;
    // - grpcListen, httpListen and adminListen (default 0.0.0.0:15013): 127.0.0.1:0, so parallel tests never collide;
    // - injectionListen: the veth's host end, at the port of webhook.url, where the API server calls it;
    // - kubernetesApiServer (https://kubernetes.default.svc) and the in-cluster defaults of
    //   kubernetesApiCaFile and kubernetesApiTokenFile: the test API server, its CA, the token above.
    // trustDomain, svidTtl, logLevel and serverDnsNames (with webhook.url's host) are used as stored.
    const config = {
      ...rendered,
      ...Object.fromEntries(['caCertFile', 'caKeyFile', 'caBundleFile', 'policyFile', 'injectionConfigFile', 'dataDir'].map((k) => [k, local(String(rendered[k]))])),
      grpcListen: '127.0.0.1:0',
      httpListen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      injectionListen: `${kube.hostAddress}:${webhookPort}`,
      kubernetesApiServer: kube.url,
      kubernetesApiCaFile: kube.caFile,
      kubernetesApiTokenFile: join(saDir, 'token'),
    };
    expect(rendered).toMatchObject({ injectionListen: '0.0.0.0:15017', kubernetesApiServer: 'https://kubernetes.default.svc', trustDomain: 'airlock.local' });
    expect(String(rendered.serverDnsNames).split(',')).toContain(WEBHOOK_HOST);
    // No offline JWKS check: a sidecar's SVID can only come from TokenReview.
    expect(rendered.kubernetesJwks).toBeUndefined();
    const configFile = join(dir, 'control-plane.yaml');
    writeFileSync(configFile, stringify(config));
    const cp = spawnAirlock('control-plane', ['control-plane', '--config', configFile], { logFile: join(dir, 'control-plane.log') });
    processes.push(cp);
    const ready = await cp.logLine('control plane ready');
    controlPlane = { grpcPort: Number(ready.grpcPort), httpPort: Number(ready.httpPort), adminPort: Number(ready.adminPort), dataDir: local(String(rendered.dataDir)) };
    expect(Number(ready.injectionPort)).toBe(webhookPort);
    await waitReady(cp, `http://127.0.0.1:${controlPlane.httpPort}/readyz`);
  });

  /** A pod of the README's kind: restricted-compliant, one app container with a port. */
  async function createPod(ns: string, name: string, serviceAccount: string, labels: Record<string, string> = {}): Promise<Pod> {
    return kube.json<Pod>('POST', `/api/v1/namespaces/${ns}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, labels: { app: name, ...labels } },
      spec: {
        serviceAccountName: serviceAccount,
        securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } },
        containers: [{
          name: 'agent',
          image: 'example.invalid/agent:1',
          ports: [{ containerPort: 8080 }],
          env: [{ name: 'MODEL', value: 'local' }],
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
        }],
      },
    });
  }

  const pods = new Map<string, Pod>();

  it('the API server calls the webhook: a pod of the labelled namespace is stored with the sidecar injected', async () => {
    for (const [name, sa] of [['planner-0', 'planner'], ['research-web-0', 'research-web']] as const) {
      const created = await createPod(agentsNamespace, name, sa);
      const pod = await stored<Pod>(`/api/v1/namespaces/${agentsNamespace}/pods/${name}`);
      expect(pod.metadata.uid).toBe(created.metadata.uid);
      pods.set(name, pod);
    }
    const pod = pods.get('planner-0') as Pod;
    expect(pod.metadata.annotations).toMatchObject({ 'airlock.dev/injected': 'true' });
    expect(pod.spec.initContainers?.map((c) => c.name)).toEqual(['airlock-sidecar']);
    const sidecar = pod.spec.initContainers?.[0] as Container;
    expect(sidecar).toMatchObject({
      image: 'ghcr.io/airlock-dev/airlock:0.1.0',
      restartPolicy: 'Always',
      args: ['sidecar'],
      securityContext: { runAsNonRoot: true, runAsUser: 2317, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } },
      volumeMounts: expect.arrayContaining([{ name: 'airlock-token', mountPath: '/var/run/secrets/airlock/tokens', readOnly: true }]) as unknown,
    });
    expect(envOf(sidecar)).toMatchObject({
      AIRLOCK_TRUST_DOMAIN: 'airlock.local',
      AIRLOCK_CONTROL_PLANE: `airlock-control-plane-headless.${namespace}.svc:15012`,
      AIRLOCK_KUBERNETES_TOKEN_FILE: '/var/run/secrets/airlock/tokens/airlock-token',
      AIRLOCK_APP_PORT: '8080',
      AIRLOCK_CA_PEM: readFileSync(join(dir, 'volumes', 'ca', 'ca.crt'), 'utf8'),
    });
    expect(pod.spec.volumes?.find((v) => v.name === 'airlock-token')).toEqual({
      name: 'airlock-token',
      projected: { defaultMode: 420, sources: [{ serviceAccountToken: { audience: 'airlock', expirationSeconds: 600, path: 'airlock-token' } }] },
    });
    const app = envOf(pod.spec.containers[0] as Container);
    expect(app).toMatchObject({ MODEL: 'local', HTTP_PROXY: 'http://127.0.0.1:15001', HTTPS_PROXY: 'http://127.0.0.1:15001', NO_PROXY: 'localhost,127.0.0.1,::1' });
    expect(await webhookCalls()).toBe(2);
  });

  it('a pod of an unlabelled namespace is stored untouched, and so is every pod of the release namespace: neither is sent to the webhook', async () => {
    const untouched = (pod: Pod): void => {
      expect(pod.spec.initContainers).toBeUndefined();
      expect(pod.metadata.annotations?.['airlock.dev/injected']).toBeUndefined();
      expect(envOf(pod.spec.containers[0] as Container)).toEqual({ MODEL: 'local' });
      expect((pod.spec.volumes ?? []).map((v) => v.name).filter((n) => n.startsWith('airlock'))).toEqual([]);
    };
    const calls = await webhookCalls();
    await kube.createNamespace('plain');
    untouched(await createPod('plain', 'plain-0', 'default'));
    // Even labelled, with the release namespace labelled too: the chart's selectors exclude it.
    const ns = await stored<{ metadata: { labels: Record<string, string> } }>(`/api/v1/namespaces/${namespace}`);
    ns.metadata.labels[injectLabel[0]] = injectLabel[1];
    await kube.json('PUT', `/api/v1/namespaces/${namespace}`, ns);
    untouched(await createPod(namespace, 'in-release-namespace', 'airlock-control-plane', { [injectLabel[0]]: injectLabel[1] }));
    expect(await webhookCalls()).toBe(calls);
    // In an unlabelled namespace, a pod labelled enabled is injected (the second webhook entry).
    const labelled = await createPod('plain', 'plain-labelled', 'default', { [injectLabel[0]]: injectLabel[1] });
    expect(labelled.spec.initContainers?.map((c) => c.name)).toEqual(['airlock-sidecar']);
    expect(await webhookCalls()).toBe(calls + 1);
  });

  /**
   * Starts the injected sidecar from the stored pod's own container spec, as the kubelet would: its
   * args and env, the image replaced by the local CLI, the token from TokenRequest (the audience and
   * expiry of the pod's projected volume, bound to the pod) at the path its mount points to.
   * Overridden, because the pod's network namespace and DNS are not here: POD_IP is 127.0.0.1;
   * AIRLOCK_CONTROL_PLANE (the headless Service) is the local control plane; the listeners, on
   * 15001/15006/15020 in the pod, are loopback ports (the inbound one also in INBOUND_ADVERTISE);
   * AIRLOCK_APP_PORT is the local app's port.
   */
  async function startInjectedSidecar(pod: Pod, appPort: number): Promise<{ process: AirlockProcess; outboundPort: number }> {
    const c = pod.spec.initContainers?.find((x) => x.name === 'airlock-sidecar') as Container;
    expect(c.command).toBeUndefined(); // the image's entrypoint: the airlock CLI
    const tokenMount = c.volumeMounts?.find((m) => m.name === 'airlock-token');
    const projected = pod.spec.volumes?.find((v) => v.name === tokenMount?.name)?.projected?.sources[0]?.serviceAccountToken;
    expect(projected?.audience).toBe('airlock');
    const tokenDir = join(dir, pod.metadata.name, 'tokens');
    mkdirSync(tokenDir, { recursive: true });
    writeFileSync(join(tokenDir, projected?.path ?? ''), await kube.tokenRequest(pod.metadata.namespace, pod.spec.serviceAccountName, {
      audiences: [projected?.audience ?? ''],
      expirationSeconds: projected?.expirationSeconds ?? 0,
      boundPod: { name: pod.metadata.name, uid: pod.metadata.uid },
    }));

    const inboundPort = await freePort();
    const env: Record<string, string> = {};
    for (const e of c.env ?? []) {
      if (e.valueFrom?.fieldRef?.fieldPath === 'status.podIP') env[e.name] = '127.0.0.1';
      else env[e.name] = (e.value ?? '').replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string) => env[name] ?? whole);
    }
    expect(env.AIRLOCK_INBOUND_ADVERTISE).toBe('127.0.0.1:15006');
    // The memory volume the sidecar writes its egress CA to, as the kubelet would mount it.
    const egressMount = c.volumeMounts?.find((m) => m.name === 'airlock-egress-ca');
    expect(pod.spec.volumes?.find((v) => v.name === egressMount?.name)).toEqual({ name: 'airlock-egress-ca', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } });
    const egressDir = join(dir, pod.metadata.name, 'egress');
    mkdirSync(egressDir, { recursive: true });
    const inEgressDir = (file: string | undefined): string => join(egressDir, (file ?? '').slice(`${egressMount?.mountPath ?? ''}/`.length));
    Object.assign(env, {
      AIRLOCK_EGRESS_CA_FILE: inEgressDir(env.AIRLOCK_EGRESS_CA_FILE),
      AIRLOCK_EGRESS_CA_BUNDLE_FILE: inEgressDir(env.AIRLOCK_EGRESS_CA_BUNDLE_FILE),
      AIRLOCK_KUBERNETES_TOKEN_FILE: join(tokenDir, (env.AIRLOCK_KUBERNETES_TOKEN_FILE ?? '').slice(`${tokenMount?.mountPath ?? ''}/`.length)),
      AIRLOCK_CONTROL_PLANE: `127.0.0.1:${controlPlane.grpcPort}`,
      AIRLOCK_OUTBOUND_LISTEN: '127.0.0.1:0',
      AIRLOCK_INBOUND_LISTEN: `127.0.0.1:${inboundPort}`,
      AIRLOCK_INBOUND_ADVERTISE: `127.0.0.1:${inboundPort}`,
      AIRLOCK_ADMIN_LISTEN: '127.0.0.1:0',
      AIRLOCK_APP_PORT: String(appPort),
    });
    const p = spawnAirlock(pod.metadata.name, c.args ?? [], { logFile: join(dir, `${pod.metadata.name}.log`), env });
    processes.push(p);
    const listening = await p.logLine('sidecar listening; obtaining an SVID');
    await waitReady(p, `http://127.0.0.1:${Number(listening.admin)}/readyz`);
    // What the pod's containers read through the volume: the egress CA, and it followed by roots.
    expect(readFileSync(env.AIRLOCK_EGRESS_CA_BUNDLE_FILE ?? '', 'utf8').startsWith(readFileSync(env.AIRLOCK_EGRESS_CA_FILE ?? '', 'utf8').trimEnd())).toBe(true);
    return { process: p, outboundPort: Number(listening.outbound) };
  }

  it('the injected sidecars get their SVIDs through TokenReview against the API server; the planner\'s agent is allowed and denied as the policy says', async () => {
    const received: EchoBody[] = [];
    const researchApp = await startEchoApp('research-web', 0, (b) => void received.push(b));
    apps.push(researchApp);
    const researcher = await startInjectedSidecar(pods.get('research-web-0') as Pod, boundPort(researchApp));
    const planner = await startInjectedSidecar(pods.get('planner-0') as Pod, 9);
    expect((await planner.process.logLine('holding an X.509-SVID')).spiffeId).toBe(`spiffe://airlock.local/ns/${agentsNamespace}/sa/planner`);
    expect((await researcher.process.logLine('holding an X.509-SVID')).spiffeId).toBe(`spiffe://airlock.local/ns/${agentsNamespace}/sa/research-web`);
    const m = await metrics();
    // Attested by TokenReview: nothing refused, and the control plane never needed a JWKS.
    expect(counter(m, 'airlock_ca_issuance_refused_total')).toBe(0);

    // The agent's HTTP_PROXY (http://127.0.0.1:15001 in the pod) is the planner sidecar's outbound port here.
    const allowed = await viaProxy(planner.outboundPort, 'GET', `http://research-web.${agentsNamespace}:8080/v1/search?q=helm`);
    expect(allowed.status).toBe(200);
    expect(allowed.json<EchoBody>().headers['x-forwarded-client-cert']).toBe(
      `By=spiffe://airlock.local/ns/${agentsNamespace}/sa/research-web;URI=spiffe://airlock.local/ns/${agentsNamespace}/sa/planner`,
    );
    const denied = await viaProxy(planner.outboundPort, 'DELETE', `http://research-web.${agentsNamespace}:8080/v1/search`);
    expect(denied.status).toBe(403);
    expect(received.map((b) => `${b.method} ${b.path}`)).toEqual(['GET /v1/search?q=helm']);
  });

  it('3. the README\'s explain line, with credentials made as the README makes them, says the policy allows that call', async () => {
    // As the README's lines: ca.pem is the CA Secret's ca.crt, the token the control plane's admin-token,
    // and the server the admin port (port-forwarded there, 127.0.0.1:15013; here the local control plane's).
    const ca = await stored<{ data: Record<string, string> }>(`/api/v1/namespaces/${namespace}/secrets/airlock-ca`);
    const credsDir = join(dir, 'admin');
    mkdirSync(credsDir);
    writeFileSync(join(credsDir, 'ca.pem'), Buffer.from(ca.data['ca.crt'] ?? '', 'base64'));
    const token = readFileSync(join(controlPlane.dataDir, 'admin-token'), 'utf8').trim();
    writeFileSync(join(credsDir, 'credentials.json'), JSON.stringify({ server: `https://127.0.0.1:${controlPlane.adminPort}`, token, caFile: 'ca.pem' }));
    const [npx, cli, ...args] = readmeCommand('npx airlock explain');
    expect([npx, cli]).toEqual(['npx', 'airlock']);
    const r = spawnSync(process.execPath, [AIRLOCK_BIN, ...args, '-o', 'json'], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, AIRLOCK_CREDENTIALS: join(credsDir, 'credentials.json') } });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ allow: true, policy: 'planners-to-researchers', destination: `spiffe://airlock.local/ns/${agentsNamespace}/sa/research-web` });
  });

  it('4. metrics: the control plane counts the allowed and the denied call', async () => {
    const grep = /grep '\^(\w+)'/.exec(README.slice(README.indexOf('## 4.')))?.[1];
    expect(grep).toBe('airlock_authz_decisions_total');
    const m = await metrics();
    expect(counter(m, grep ?? '', 'verdict="allow"')).toBeGreaterThanOrEqual(1);
    expect(counter(m, grep ?? '', 'verdict="deny"')).toBeGreaterThanOrEqual(1);
  });

  it('uninstall: every object of the release is gone (the claim waits only on the finalizer a controller lifts)', async () => {
    const args = helmArgs('helm uninstall', valuesFile, kube.kubeconfig);
    expect(args.slice(0, 2)).toEqual(['uninstall', release]);
    runHelm(args);
    await expectGone(installed, namespace);
    expect((await kube.request('POST', `/api/v1/namespaces/${agentsNamespace}/pods`, {
      apiVersion: 'v1', kind: 'Pod', metadata: { name: 'after-uninstall' },
      spec: { serviceAccountName: 'planner', securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } }, containers: [{ name: 'agent', image: 'example.invalid/agent:1', securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } }] },
    })).status).toBe(201);
  });

  /** Installs, checks every object is stored as rendered, uninstalls and checks they are gone; returns the objects. */
  async function installAndUninstall(ns: string, args: readonly string[]): Promise<K8sObject[]> {
    runHelm(['install', release, chartDir, '--namespace', ns, ...args, '--kubeconfig', kube.kubeconfig]);
    const objects = manifest(ns);
    for (const o of objects) expect(alteredFields(o, await stored(objectPath(o, ns))), `${ns}: ${o.kind}/${o.metadata.name}`).toEqual([]);
    runHelm(['uninstall', release, '--namespace', ns, '--kubeconfig', kube.kubeconfig]);
    await expectGone(objects, ns);
    return objects;
  }

  it('values-ha.yaml (etcd, three replicas spread over nodes and zones) with autoscaling is stored as rendered too', async () => {
    const objects = await installAndUninstall('airlock-ha', ['--create-namespace', '-f', join(chartDir, 'values-ha.yaml'), '--set', 'autoscaling.enabled=true', '--set', 'autoscaling.minReplicas=3']);
    expect(objects.map((o) => o.kind)).toContain('HorizontalPodAutoscaler');
    expect(objects.map((o) => o.kind)).not.toContain('PersistentVolumeClaim');
  });

  it('a CA brought in an existing Secret: the webhook trusts its ca.crt, read from the cluster at install, and uninstall leaves the Secret', async () => {
    const ns = 'airlock-byo';
    const pki = createOperatorPki();
    const b64 = (pem: string): string => Buffer.from(pem).toString('base64');
    await kube.createNamespace(ns);
    await kube.json('POST', `/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: 'v1', kind: 'Secret', metadata: { name: 'my-mesh-ca' }, type: 'kubernetes.io/tls',
      data: { 'tls.crt': b64(pki.intermediate.certPem), 'tls.key': b64(pki.intermediate.keyPem), 'ca.crt': b64(pki.root.certPem) },
    });
    const objects = await installAndUninstall(ns, ['--set', 'ca.source=existingSecret', '--set', 'ca.existingSecret=my-mesh-ca']);
    const webhook = objects.find((o) => o.kind === 'MutatingWebhookConfiguration') as unknown as { webhooks: { clientConfig: { caBundle: string } }[] };
    expect(webhook.webhooks.map((w) => w.clientConfig.caBundle)).toEqual([b64(pki.root.certPem), b64(pki.root.certPem)]);
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
    expect((await kube.request('GET', `/api/v1/namespaces/${ns}/secrets/my-mesh-ca`)).status).toBe(200);
  });
});
