import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { etcdPath } from './k8s-tools.ts';
import { freePort } from './ports.ts';


interface MemberPorts {
  readonly name: string;
  readonly client: number;
  readonly peer: number;
  readonly metrics: number;
}

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  /** Plain HTTP /health and /metrics (separate from the client URL, which may be TLS). */
  readonly metricsUrl: string;
  readonly process: ChildProcess;
}

/** Files for etcd's client TLS: its certificate and key, and the CA its clients' certificates must chain to. */
export interface EtcdServerTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly clientCaFile: string;
}

export interface EtcdCluster {
  /** Client URLs of every member (what `--store etcd://…` and EtcdStore take). */
  readonly endpoints: readonly string[];
  readonly members: readonly EtcdMember[];
  /** Kills every member and removes their data. */
  stop(): Promise<void>;
  /** Starts `member` again (after it exited or was killed), on its data dir and ports; resolves once it is healthy. */
  restart(member: EtcdMember): Promise<EtcdMember>;
}

/**
 * A real etcd cluster of `size` members on loopback ports, data in a temp dir: for the store's
 * conformance suite and the replica tests. Every URL is 127.0.0.1; nothing else is dialled.
 */
export async function startEtcd(size = 1, o: { tls?: EtcdServerTls; dataDir?: string; wrap?: readonly string[]; args?: readonly string[] } = {}): Promise<EtcdCluster> {
  const binary = etcdPath();
  // `dataDir`: the caller's (e.g. a tmpfs); `wrap`: a command that execs etcd in place (e.g. nsenter into a mount namespace).
  const dir = o.dataDir ?? mkdtempSync(join(tmpdir(), 'airlock-etcd-'));
  // With TLS, clients must present a certificate of clientCaFile (--client-cert-auth), as in production.
  const tls = o.tls === undefined ? [] : ['--cert-file', o.tls.certFile, '--key-file', o.tls.keyFile, '--trusted-ca-file', o.tls.clientCaFile, '--client-cert-auth'];
  const choosePorts = (): Promise<MemberPorts[]> => Promise.all(Array.from({ length: size }, async (_, i) => ({ name: `m${i}`, client: await freePort(), peer: await freePort(), metrics: await freePort() })));
  const spawnMember = (p: MemberPorts, all: readonly MemberPorts[]): EtcdMember => {
    const clientUrl = `${o.tls === undefined ? 'http' : 'https'}://127.0.0.1:${p.client}`;
    const metricsUrl = `http://127.0.0.1:${p.metrics}`;
    const wrap = o.wrap ?? [];
    const child = spawn(
      wrap[0] ?? binary,
      [
        ...(wrap.length === 0 ? [] : [...wrap.slice(1), binary]),
        '--name', p.name,
        '--data-dir', join(dir, p.name),
        '--listen-client-urls', clientUrl,
        '--advertise-client-urls', clientUrl,
        '--listen-peer-urls', `http://127.0.0.1:${p.peer}`,
        '--initial-advertise-peer-urls', `http://127.0.0.1:${p.peer}`,
        '--initial-cluster', all.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(','),
        '--initial-cluster-token', `airlock-test-${process.pid}`,
        '--initial-cluster-state', 'new',
        '--listen-metrics-urls', metricsUrl,
        ...tls,
        ...(o.args ?? []),
        '--log-level', 'error',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    return { name: p.name, clientUrl, metricsUrl, process: child };
  };
  const kill = (members: readonly EtcdMember[]): Promise<unknown> =>
    Promise.all(
      members.map(
        (m) =>
          new Promise<void>((resolve) => {
            if (m.process.exitCode !== null || m.process.signalCode !== null) return resolve();
            m.process.once('exit', () => resolve());
            m.process.kill('SIGKILL');
          }),
      ),
    );
  // A chosen port may still be taken by someone else when etcd binds it: then new ports, a new cluster.
  let ports: MemberPorts[] = [];
  let members: EtcdMember[] = [];
  for (let attempt = 1; ; attempt++) {
    ports = await choosePorts();
    members = ports.map((p) => spawnMember(p, ports));
    try {
      await Promise.all(members.map((m) => waitHealthy(m)));
      break;
    } catch (err) {
      await kill(members);
      for (const p of ports) rmSync(join(dir, p.name), { recursive: true, force: true });
      if (attempt < 3 && err instanceof Error && err.message.includes('address already in use')) continue;
      if (o.dataDir === undefined) rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }
  const stop = async (): Promise<void> => {
    await kill(members);
    if (o.dataDir === undefined) rmSync(dir, { recursive: true, force: true });
    else for (const p of ports) rmSync(join(dir, p.name), { recursive: true, force: true });
  };
  const restart = async (member: EtcdMember): Promise<EtcdMember> => {
    const i = members.indexOf(member);
    const p = ports[i];
    if (p === undefined) throw new Error(`${member.name} is not a member of this cluster`);
    // The cluster exists: a restarted member rejoins it from its data dir (the initial-* flags are ignored then).
    const again = spawnMember(p, ports);
    members[i] = again;
    await waitHealthy(again);
    return again;
  };
  return { endpoints: members.map((m) => m.clientUrl), members, stop, restart };
}

async function waitHealthy(m: EtcdMember, timeoutMs = 20_000): Promise<void> {
  let stderr = '';
  m.process.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
  const stderrClosed = new Promise((resolve) => (m.process.stderr === null ? resolve(undefined) : m.process.stderr.once('close', resolve)));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (m.process.exitCode !== null) {
      // Its last words (e.g. "bind: address already in use") may arrive after the exit.
      await Promise.race([stderrClosed, new Promise((r) => setTimeout(r, 1000))]);
      throw new Error(`etcd ${m.name} exited (${m.process.exitCode}): ${stderr}`);
    }
    try {
      const res = await fetch(`${m.metricsUrl}/health`);
      if (res.ok && ((await res.json()) as { health?: string }).health === 'true') return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`etcd ${m.name} was not healthy within ${timeoutMs} ms: ${stderr}`);
}
