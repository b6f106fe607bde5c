/**
 * A real kube-apiserver (and its etcd) for a test, in a network namespace with no route out.
 *
 * Topology (one per startKubeApiServer call; N is picked at random and checked unused):
 *
 *   host netns (the test, helm, a control plane the test starts)      netns airlock-k8s-<pid>-<hex>
 *   ┌────────────────────────────────────────────┐   veth pair   ┌─────────────────────────────────────┐
 *   │ ak<hex>h  198.18.N.1/30  (hostAddress)     │◄────────────►│ ak<hex>n  198.18.N.2/30  (address)  │
 *   │ route 198.18.N.0/30 dev ak<hex>h           │               │ kube-apiserver :6443 on address     │
 *   └────────────────────────────────────────────┘               │ etcd 127.0.0.1:2379 (its loopback)  │
 *                                                                │ routes: 198.18.N.0/30 only, no      │
 *                                                                │ default route, IPv6 off             │
 *                                                                └─────────────────────────────────────┘
 *
 * - 198.18.0.0/15 is reserved for network tests (RFC 2544): no real host has these addresses.
 * - Inside the namespace the only route is the /30 to the host end, so whatever the API server
 *   dials (a webhook URL, a ClusterIP of --service-cluster-ip-range, a public address) fails with
 *   "network unreachable" unless it is the namespace's own loopback or hostAddress. The host does
 *   not forward for it either: nothing in the namespace has a route via hostAddress.
 * - Names resolve from /etc/netns/<netns>/hosts (bind-mounted over /etc/hosts by `ip netns exec`):
 *   `hosts` maps names (e.g. the control plane Service's DNS name) to hostAddress so that the API
 *   server can call a webhook served by a process in the host namespace on hostAddress; its
 *   resolv.conf is empty, so DNS queries go to the namespace's own loopback and nowhere else.
 * - `netnsCommand` runs a process inside the namespace instead (it then reaches the API server on
 *   `address`, and the API server reaches it on its 127.0.0.1, as the issue's webhook URL says).
 * - stop() kills both processes and deletes the namespace (which deletes the veth pair); a worker
 *   that dies without stop() is cleaned up at its exit and, failing that, by the next start, which
 *   deletes namespaces of dead test processes.
 *
 * There is no kubelet, scheduler or controller manager: pods are stored but never run, a namespace
 * gets no `default` ServiceAccount by itself (createNamespace makes one), and deletion of a
 * namespace never finishes.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTestCa } from '../../sidecar/src/testing/certs.ts';
import { etcdPath, kubeApiserverPath } from './k8s-tools.ts';

export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';
const NETNS_PREFIX = 'airlock-k8s-';
const API_PORT = 6443;
const START_TIMEOUT_MS = 120_000;

export interface KubeResponse<T = Record<string, unknown>> {
  readonly status: number;
  readonly body: T;
}

export interface TokenRequestOptions {
  readonly audiences: readonly string[];
  /** The API server refuses less than 600 (10 minutes). */
  readonly expirationSeconds?: number;
  /** Binds the token to a pod: TokenReview then answers with its name and uid, and refuses the token once the pod is gone. */
  readonly boundPod?: { readonly name: string; readonly uid: string };
}

export interface KubeApiServer {
  /** https://<address>:6443 */
  readonly url: string;
  /** PEM of the CA that signed the API server's serving certificate, and that file. */
  readonly caPem: string;
  readonly caFile: string;
  /** Bearer token of a system:masters user. */
  readonly adminToken: string;
  /** A kubeconfig (cluster, CA, admin token) for helm: `helm --kubeconfig <this>`. */
  readonly kubeconfig: string;
  /** The `iss` of service-account tokens, and the PEM private key the API server signs them with. */
  readonly issuer: string;
  readonly serviceAccountKeyPem: string;
  readonly netns: string;
  /** The API server's address (in the namespace) and the host end of the veth pair. */
  readonly address: string;
  readonly hostAddress: string;
  /** A scratch directory removed by stop(). */
  readonly dir: string;
  /** [command, args] that run `cmd args…` inside the namespace, for spawn/execFile. */
  netnsCommand(cmd: string, args: readonly string[]): [string, string[]];
  /** A JSON request with the admin token; the body is parsed (text when not JSON). */
  request<T = Record<string, unknown>>(method: string, path: string, body?: unknown, token?: string): Promise<KubeResponse<T>>;
  /** Like request, but throws unless the status is 2xx; returns the body. */
  json<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T>;
  /** A namespace (with its `default` ServiceAccount, which no controller makes here). */
  createNamespace(name: string, labels?: Readonly<Record<string, string>>): Promise<void>;
  /** Returns the ServiceAccount's uid. */
  createServiceAccount(namespace: string, name: string): Promise<string>;
  deleteServiceAccount(namespace: string, name: string): Promise<void>;
  /** A token from the TokenRequest API, signed by the API server. */
  tokenRequest(namespace: string, serviceAccount: string, o: TokenRequestOptions): Promise<string>;
  stop(): Promise<void>;
}

export interface KubeApiServerOptions {
  /** Names the API server resolves to hostAddress (e.g. a webhook Service's DNS name). */
  readonly hostNames?: readonly string[];
  /** Extra kube-apiserver flags, e.g. ['--service-account-max-token-expiration=2h']. */
  readonly extraArgs?: readonly string[];
}

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Deletes a namespace of ours: kills what still runs in it; the veth pair goes with it. */
function deleteNetns(name: string): void {
  try {
    for (const pid of ip('netns', 'pids', name).split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    ip('netns', 'delete', name);
  } catch {
    // already gone
  }
  rmSync(join('/etc/netns', name), { recursive: true, force: true });
}

/** Namespaces left by test processes that died without cleaning up. */
function deleteStaleNetns(): void {
  for (const line of ip('netns', 'list').split('\n')) {
    const m = new RegExp(`^(${NETNS_PREFIX}(\\d+)-[0-9a-f]+)`).exec(line);
    if (m?.[1] !== undefined && !alive(Number(m[2]))) deleteNetns(m[1]);
  }
}

/** A /30 of 198.18.0.0/15 that no interface of the host uses: [host end, namespace end]. */
function freeSubnet(): [string, string] {
  const used = ip('-4', '-o', 'addr', 'show');
  for (;;) {
    const i = randomBytes(4).readUInt32BE() % (1 << 15);
    const base = (198 << 24) + (18 << 16) + i * 4;
    const dotted = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
    const [host, ns] = [dotted(base + 1), dotted(base + 2)];
    if (!used.includes(` ${host}/`) && !used.includes(` ${ns}/`)) return [host, ns];
  }
}

function kubeconfigYaml(url: string, caPem: string, token: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: airlock-test`,
    `  cluster: { server: "${url}", certificate-authority-data: ${Buffer.from(caPem).toString('base64')} }`,
    'users:',
    `- name: admin`,
    `  user: { token: "${token}" }`,
    'contexts:',
    '- name: airlock-test',
    '  context: { cluster: airlock-test, user: admin }',
    'current-context: airlock-test',
    '',
  ].join('\n');
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts etcd and kube-apiserver in a fresh network namespace and waits for the `default` namespace. */
export async function startKubeApiServer(o: KubeApiServerOptions = {}): Promise<KubeApiServer> {
  const [apiserverBin, etcdBin] = [kubeApiserverPath(), etcdPath()];
  deleteStaleNetns();
  const hex = randomBytes(3).toString('hex');
  const netns = `${NETNS_PREFIX}${process.pid}-${hex}`;
  const [hostIf, nsIf] = [`ak${hex}h`, `ak${hex}n`];
  const dir = mkdtempSync(join(tmpdir(), 'airlock-kube-'));
  const children: ChildProcess[] = [];
  let stopped = false;
  const cleanup = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    deleteNetns(netns);
    if (process.env.AIRLOCK_KEEP_TEST_DIRS === undefined) rmSync(dir, { recursive: true, force: true });
  };
  // A worker that exits without stop() (a crash, a timeout) still removes its namespace.
  process.once('exit', cleanup);

  const netnsCommand = (cmd: string, args: readonly string[]): [string, string[]] => ['ip', ['netns', 'exec', netns, cmd, ...args]];
  try {
    const [hostAddress, address] = freeSubnet();
    mkdirSync(join('/etc/netns', netns), { recursive: true });
    writeFileSync(join('/etc/netns', netns, 'hosts'), ['127.0.0.1 localhost', ...(o.hostNames ?? []).map((n) => `${hostAddress} ${n}`), ''].join('\n'));
    writeFileSync(join('/etc/netns', netns, 'resolv.conf'), '');
    ip('netns', 'add', netns);
    ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', netns);
    execFileSync('sysctl', ['-qw', `net.ipv6.conf.${hostIf}.disable_ipv6=1`]);
    ip('addr', 'add', `${hostAddress}/30`, 'dev', hostIf);
    ip('link', 'set', hostIf, 'up');
    execFileSync('ip', ['netns', 'exec', netns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    ip('-n', netns, 'link', 'set', 'lo', 'up');
    ip('-n', netns, 'addr', 'add', `${address}/30`, 'dev', nsIf);
    ip('-n', netns, 'link', 'set', nsIf, 'up');

    const url = `https://${address}:${API_PORT}`;
    const ca = createTestCa('kube-apiserver test CA');
    const serving = ca.issue({ dnsNames: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc'], ips: [address, '127.0.0.1'], ttlMs: 24 * 3_600_000 });
    const sa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const serviceAccountKeyPem = sa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const adminToken = randomBytes(24).toString('hex');
    const file = (name: string, text: string): string => {
      const path = join(dir, name);
      writeFileSync(path, text, { mode: 0o600 });
      return path;
    };
    const caFile = file('ca.pem', ca.certPem);
    const kubeconfig = file('kubeconfig', kubeconfigYaml(url, ca.certPem, adminToken));

    let startError: Error | undefined;
    const spawnLogged = (name: string, cmd: string, args: string[]): ChildProcess => {
      const log = join(dir, `${name}.log`);
      const out = createWriteStream(log);
      const [c, a] = netnsCommand(cmd, args);
      const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.pipe(out);
      child.stderr.pipe(out);
      child.once('exit', (code, signal) => {
        if (!stopped) startError ??= new Error(`${name} exited (${code ?? signal}) before stop(); last log lines:\n${tail(log)}`);
      });
      children.push(child);
      return child;
    };

    spawnLogged('etcd', etcdBin, [
      '--name', 'default', '--data-dir', join(dir, 'etcd'),
      '--listen-client-urls', 'http://127.0.0.1:2379', '--advertise-client-urls', 'http://127.0.0.1:2379',
      '--listen-peer-urls', 'http://127.0.0.1:2380', '--initial-advertise-peer-urls', 'http://127.0.0.1:2380',
      '--initial-cluster', 'default=http://127.0.0.1:2380', '--log-level', 'warn', '--logger', 'zap',
    ]);
    spawnLogged('kube-apiserver', apiserverBin, [
      '--etcd-servers=http://127.0.0.1:2379',
      `--bind-address=${address}`, `--advertise-address=${address}`, `--secure-port=${API_PORT}`,
      // Without it the API server refuses to advertise an address it cannot route pods to.
      '--endpoint-reconciler-type=none',
      `--tls-cert-file=${file('apiserver.pem', serving.certPem)}`, `--tls-private-key-file=${file('apiserver.key', serving.keyPem)}`,
      `--cert-dir=${join(dir, 'certs')}`,
      `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
      `--service-account-key-file=${file('sa.pub', sa.publicKey.export({ type: 'spki', format: 'pem' }).toString())}`,
      `--service-account-signing-key-file=${file('sa.key', serviceAccountKeyPem)}`,
      // Unroutable in the namespace: a Service's ClusterIP leads nowhere.
      '--service-cluster-ip-range=10.96.0.0/16',
      '--authorization-mode=RBAC',
      `--token-auth-file=${file('tokens.csv', `${adminToken},admin,admin-uid,"system:masters"\n`)}`,
      '--profiling=false',
      ...(o.extraArgs ?? []),
    ]);

    const send = <T>(method: string, path: string, body?: unknown, token = adminToken): Promise<KubeResponse<T>> =>
      new Promise((resolve, reject) => {
        const payload = body === undefined ? undefined : JSON.stringify(body);
        const req = request(`${url}${path}`, {
          method,
          ca: ca.certPem,
          agent: false,
          signal: AbortSignal.timeout(30_000),
          headers: {
            // JSON, or what the path serves (/openid/v1/jwks is application/jwk-set+json).
            accept: 'application/json, */*',
            ...(token === '' ? {} : { authorization: `Bearer ${token}` }),
            ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
          },
        }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              // not JSON (e.g. /readyz)
            }
            resolve({ status: res.statusCode ?? 0, body: parsed as T });
          });
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(payload);
      });
    const json = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
      const res = await send<T>(method, path, body);
      if (res.status < 200 || res.status > 299) throw new Error(`${method} ${path}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    };

    // Ready when /readyz says so and the `default` namespace exists (it appears a moment later).
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (startError !== undefined) throw startError;
      const ready = await send('GET', '/readyz').catch(() => undefined);
      if (ready?.status === 200 && (await send('GET', '/api/v1/namespaces/default').catch(() => undefined))?.status === 200) break;
      if (Date.now() > deadline) throw new Error(`kube-apiserver not ready after ${START_TIMEOUT_MS} ms; last log lines:\n${tail(join(dir, 'kube-apiserver.log'))}`);
      await sleep(200);
    }

    const createServiceAccount = async (namespace: string, name: string): Promise<string> =>
      (await json<{ metadata: { uid: string } }>('POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } })).metadata.uid;

    return {
      url,
      caPem: ca.certPem,
      caFile,
      adminToken,
      kubeconfig,
      issuer: SERVICE_ACCOUNT_ISSUER,
      serviceAccountKeyPem,
      netns,
      address,
      hostAddress,
      dir,
      netnsCommand,
      request: send,
      json,
      async createNamespace(name, labels = {}) {
        await json('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
        await createServiceAccount(name, 'default');
      },
      createServiceAccount,
      async deleteServiceAccount(namespace, name) {
        await json('DELETE', `/api/v1/namespaces/${namespace}/serviceaccounts/${name}`);
      },
      async tokenRequest(namespace, serviceAccount, t) {
        const spec = {
          audiences: t.audiences,
          ...(t.expirationSeconds === undefined ? {} : { expirationSeconds: t.expirationSeconds }),
          ...(t.boundPod === undefined ? {} : { boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: t.boundPod.name, uid: t.boundPod.uid } }),
        };
        const res = await json<{ status: { token: string } }>('POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`, {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenRequest',
          spec,
        });
        return res.status.token;
      },
      async stop() {
        stopped = true;
        await Promise.all(children.map((c) => new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.kill('SIGTERM');
          setTimeout(() => c.kill('SIGKILL'), 5000).unref();
        })));
        cleanup();
        process.removeListener('exit', cleanup);
      },
    };
  } catch (err) {
    stopped = true;
    cleanup();
    process.removeListener('exit', cleanup);
    throw err;
  }
}
