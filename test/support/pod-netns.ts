// Two "pods" as network namespaces joined by one veth pair, for the transparent-mode e2e test (root).
// Nothing routes anywhere else: no default route, no link to the host's namespace.
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const POD_NET = {
  /** The agent's pod: its app (captured by the redirect rules) and its sidecar. */
  agentIp: '10.77.0.2',
  /** The peer's pod: its app on :8080 (every interface, so that a direct connection could reach it) and its sidecar; the control plane too. */
  peerIp: '10.77.0.1',
  peerAppPort: 8080,
  /** An external host (a second address of the peer's namespace): HTTP on 80, HTTPS on 443. */
  externalIp: '10.77.0.3',
  externalName: 'api.external.test',
  forbiddenName: 'forbidden.external.test',
} as const;

export interface PodNetwork {
  readonly agent: string;
  readonly peer: string;
  /** Ends what still runs in the namespaces (our children), deletes them and their /etc/netns files. */
  remove(): Promise<void>;
}

const PREFIX = 'airlock-e2e-';

async function removeNamespace(name: string): Promise<void> {
  const pids = await run('ip', ['netns', 'pids', name]).then((r) => r.stdout.split('\n').filter((p) => /^\d+$/.test(p)), () => []);
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await run('ip', ['netns', 'del', name]).catch(() => undefined);
  rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
}

/** Namespaces a killed earlier run of this test left (its pid is in the name and gone). */
async function removeAbandoned(): Promise<void> {
  const { stdout } = await run('ip', ['netns', 'list']);
  for (const name of stdout.split('\n').map((l) => l.split(' ')[0] ?? '')) {
    const m = new RegExp(`^${PREFIX}(\\d+)-[ap]$`).exec(name);
    if (m === null) continue;
    let alive = true;
    try {
      process.kill(Number(m[1]), 0);
    } catch {
      alive = false;
    }
    if (!alive) await removeNamespace(name);
  }
}

export async function createPodNetwork(): Promise<PodNetwork> {
  await removeAbandoned();
  const agent = `${PREFIX}${process.pid}-a`;
  const peer = `${PREFIX}${process.pid}-p`;
  const remove = async (): Promise<void> => {
    await removeNamespace(agent);
    await removeNamespace(peer);
  };
  try {
    await run('ip', ['netns', 'add', agent]);
    await run('ip', ['netns', 'add', peer]);
    // Made inside the agent's namespace with its other end in the peer's: never in the host's.
    await run('ip', ['-n', agent, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peer]);
    for (const [ns, ips] of [[agent, [POD_NET.agentIp]], [peer, [POD_NET.peerIp, POD_NET.externalIp]]] as const) {
      for (const ip of ips) await run('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      await run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    }
    // `ip netns exec` mounts these over /etc/hosts: the external names resolve in the agent's pod only.
    mkdirSync(`/etc/netns/${agent}`, { recursive: true });
    writeFileSync(`/etc/netns/${agent}/hosts`, `127.0.0.1 localhost\n${POD_NET.externalIp} ${POD_NET.externalName} ${POD_NET.forbiddenName}\n`);
    return { agent, peer, remove };
  } catch (err) {
    await remove();
    throw err;
  }
}
