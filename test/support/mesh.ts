import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { boundPort, closeServer } from '@airlock/common/net';
import { adminPost } from '../../cli/src/admin-client.ts';
import type { AdminCredentials } from '../../cli/src/credentials.ts';
import { startEchoApp, type EchoBody } from '../../cli/src/demo/echo-app.ts';
import { spawnAirlock, waitReady, type AirlockProcess } from '../../cli/src/demo/processes.ts';
import { viaProxy, type ProxyResponse } from './proxy-client.ts';

/** One agent of a test mesh: its echo app, its sidecar and every request its app received. */
export interface MeshAgent {
  readonly name: string;
  readonly identity: string;
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly adminPort: number;
  readonly appPort: number;
  readonly received: EchoBody[];
  sidecar: AirlockProcess;
}

export interface Mesh {
  readonly dir: string;
  readonly trustDomain: string;
  readonly dataDir: string;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly adminPort: number;
  readonly creds: AdminCredentials;
  readonly agents: ReadonlyMap<string, MeshAgent>;
  agent(name: string): MeshAgent;
  /** A request from `from`'s agent through its sidecar's outbound proxy. */
  call(from: string, method: string, url: string, o?: { headers?: Record<string, string>; body?: string }): Promise<ProxyResponse>;
  createJoinToken(identity: string, labels?: Readonly<Record<string, string>>): Promise<string>;
  /** Starts one more agent (app and sidecar) in the mesh's namespace, with its join token's labels; ready when it answers. */
  addAgent(name: string, labels?: Readonly<Record<string, string>>): Promise<MeshAgent>;
  stopControlPlane(): Promise<void>;
  startControlPlane(): Promise<void>;
  /** The control-plane process now (a restart makes another). */
  controlPlaneProcess(): AirlockProcess | undefined;
  close(): Promise<void>;
}

export interface MeshOptions {
  readonly agents: readonly string[];
  readonly policy: string;
  readonly trustDomain?: string;
  readonly namespace?: string;
  readonly authzTimeout?: string;
  /** Extra flags for `airlock control-plane`, e.g. ['--svid-ttl', '3s']. */
  readonly controlPlaneArgs?: readonly string[];
  /** A command that execs the control plane in place (spawnAirlock's `wrap`), e.g. to give it a mount namespace. */
  readonly controlPlaneWrap?: readonly string[];
  /** Extra flags for every `airlock sidecar`, e.g. ['--tls-min-version', 'TLSv1.2']. */
  readonly sidecarArgs?: readonly string[];
  /** Labels of an agent's join token (`airlock token create --label`), by agent name. */
  readonly labels?: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /** The app behind an agent's sidecar (default: the demo's echo app), listening on 127.0.0.1 port 0. */
  readonly startApp?: (agent: string, onRequest: (body: EchoBody) => void) => Promise<Server>;
}

/**
 * Starts a real mesh for a test: the control plane and one sidecar per agent as child processes
 * (the same `airlock` binary users run), echo apps in this process, all on 127.0.0.1 free ports.
 */
export async function startMesh(o: MeshOptions): Promise<Mesh> {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-e2e-'));
  const trustDomain = o.trustDomain ?? 'e2e.test';
  const namespace = o.namespace ?? 'agents';
  const dataDir = join(dir, 'control-plane');
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, o.policy);
  // Port 0 everywhere: each process binds what the OS gives it and logs the bound ports, so
  // parallel test files never race for a port.
  let grpcPort = 0;
  let httpPort = 0;
  let adminPort = 0;
  const apps: Server[] = [];
  const agents = new Map<string, MeshAgent>();
  let controlPlane: AirlockProcess | undefined;
  const listenArgs = (): string[] => ['--grpc-listen', `127.0.0.1:${grpcPort}`, '--http-listen', `127.0.0.1:${httpPort}`, '--admin-listen', `127.0.0.1:${adminPort}`];

  const startControlPlane = async (): Promise<void> => {
    controlPlane = spawnAirlock('control-plane', [
      'control-plane',
      '--trust-domain', trustDomain,
      '--data-dir', dataDir,
      ...listenArgs(),
      '--policy-file', policyFile,
      ...(o.controlPlaneArgs ?? []),
    ], { logFile: join(dir, 'control-plane.log'), ...(o.controlPlaneWrap === undefined ? {} : { wrap: o.controlPlaneWrap }) });
    // A restart reuses the ports of the first start: the sidecars know the control plane there.
    const ready = await controlPlane.logLine('control plane ready');
    grpcPort = Number(ready.grpcPort);
    httpPort = Number(ready.httpPort);
    adminPort = Number(ready.adminPort);
  };

  const close = async (): Promise<void> => {
    await Promise.all([...agents.values()].map((a) => a.sidecar.stop()));
    await controlPlane?.stop();
    await Promise.all(apps.map((s) => closeServer(s)));
    if (process.env.AIRLOCK_KEEP_TEST_DIRS === undefined) rmSync(dir, { recursive: true, force: true });
  };

  try {
    await startControlPlane();
    // As the CLI with the demo's credentials: HTTPS, verified against the trust bundle the control plane keeps current.
    const creds: AdminCredentials = {
      server: `https://127.0.0.1:${adminPort}`,
      token: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim(),
      caFile: join(dataDir, 'trust-bundle.pem'),
    };
    const createJoinToken = async (identity: string, labels?: Readonly<Record<string, string>>): Promise<string> =>
      ((await adminPost(creds, '/v1/join-tokens', { identity, ...(labels === undefined ? {} : { labels }) })) as { token: string }).token;

    const startAgent = async (name: string, labels: Readonly<Record<string, string>> | undefined): Promise<MeshAgent> => {
      const identity = `spiffe://${trustDomain}/ns/${namespace}/sa/${name}`;
      const received: EchoBody[] = [];
      const onRequest = (body: EchoBody): void => void received.push(body);
      const app = await (o.startApp === undefined ? startEchoApp(name, 0, onRequest) : o.startApp(name, onRequest));
      apps.push(app);
      const appPort = boundPort(app);
      const sidecar = spawnAirlock(`sidecar ${name}`, [
        'sidecar',
        '--trust-domain', trustDomain,
        '--control-plane', `127.0.0.1:${grpcPort}`,
        '--ca-file', join(dataDir, 'trust-bundle.pem'),
        '--outbound-listen', '127.0.0.1:0',
        '--inbound-listen', '127.0.0.1:0',
        '--admin-listen', '127.0.0.1:0',
        '--app-port', String(appPort),
        ...(o.authzTimeout === undefined ? [] : ['--authz-timeout', o.authzTimeout]),
        ...(o.sidecarArgs ?? []),
      ], { logFile: join(dir, `sidecar-${name}.log`), env: { AIRLOCK_JOIN_TOKEN: await createJoinToken(identity, labels) } });
      const listening = await sidecar.logLine('sidecar listening; obtaining an SVID');
      const [outboundPort, inboundPort, adminPort] = [Number(listening.outbound), Number(listening.inbound), Number(listening.admin)];
      const started = { name, identity, outboundPort, inboundPort, adminPort, appPort, received, sidecar };
      agents.set(name, started);
      return started;
    };
    for (const name of o.agents) await startAgent(name, o.labels?.[name]);
    await Promise.all([...agents.values()].map((a) => waitReady(a.sidecar, `http://127.0.0.1:${a.adminPort}/readyz`)));

    const agent = (name: string): MeshAgent => {
      const a = agents.get(name);
      if (a === undefined) throw new Error(`no agent ${name} in this mesh`);
      return a;
    };
    return {
      dir,
      trustDomain,
      dataDir,
      grpcPort,
      httpPort,
      adminPort,
      creds,
      agents,
      agent,
      call: (from, method, url, opts) => viaProxy(agent(from).outboundPort, method, url, opts),
      createJoinToken,
      addAgent: async (name, labels) => {
        const added = await startAgent(name, labels);
        await waitReady(added.sidecar, `http://127.0.0.1:${added.adminPort}/readyz`);
        return added;
      },
      stopControlPlane: async () => controlPlane?.stop(),
      startControlPlane,
      controlPlaneProcess: () => controlPlane,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Segments named after each agent and allow-policies `from → to` for the given methods/paths. */
export function policyYaml(namespace: string, agents: readonly string[], allows: readonly { name: string; from: string; to: string; methods: string[]; paths: string[] }[]): string {
  const segments = agents.map(
    (a) => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: ${a} }\nspec:\n  selector: { namespace: ${namespace}, serviceAccounts: [${a}] }\n`,
  );
  const policies = allows.map(
    (p) =>
      `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: ${p.name} }\nspec:\n  from: { segments: [${p.from}] }\n  to: { segments: [${p.to}] }\n  rules: [ { methods: [${p.methods.join(', ')}], paths: [${p.paths.map((x) => JSON.stringify(x)).join(', ')}] } ]\n  action: allow\n`,
  );
  return [...segments, ...policies].join('---\n');
}
