import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

interface Answer {
  status: number;
  body: unknown;
}

/** Runs test/support/rebinding-in-netns.ts in a namespace of its own (network and mounts) and returns its results. */
async function inNetns(mode: 'system' | 'servers'): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'airlock-resolv-'));
  try {
    // The system resolver of the namespace asks dnsmasq on 127.0.0.1 (a mount seen in that namespace only).
    const resolvConf = join(dir, 'resolv.conf');
    writeFileSync(resolvConf, 'nameserver 127.0.0.1\n');
    // Root (CI) makes the namespaces directly; elsewhere a user namespace maps us to root inside them.
    const unshareFlags = process.getuid?.() === 0 ? ['-n', '-m'] : ['-r', '-n', '-m'];
    const script = join(import.meta.dirname, 'support', 'rebinding-in-netns.ts');
    // The metadata addresses and the "external" one live on loopback, in this namespace only.
    const setup = `ip link set lo up && ip addr add 10.77.9.1/32 dev lo && ip addr add 169.254.169.254/32 dev lo && ip -6 addr add fd00:ec2::254/128 dev lo && mount --bind "${resolvConf}" /etc/resolv.conf`;
    const { stdout } = await run('unshare', [...unshareFlags, 'sh', '-c', `${setup} && exec "${process.execPath}" "${script}" ${mode}`], { timeout: 90_000 });
    return stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('external destinations are checked by the address they resolve to', () => {
  it.each(['system', 'servers'] as const)('refuses a name rebound to the metadata address (and loopback, and a mixed answer) with 403, dialling nothing there; an allowed name is reached (%s resolver)', async (mode) => {
    const stdout = await inNetns(mode);
    const r = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<'before' | 'connectBefore' | 'after' | 'connectAfter' | 'mixed' | 'v6meta' | 'loop' | 'allowed', Answer> & {
      forbiddenReached: string[];
      dialled: { msg: string; host: string; address: string }[];
    };
    // Before the rebinding the name reaches the external host, the name kept in Host.
    expect(r.before).toEqual({ status: 200, body: 'external ok (Host rebind.test)' });
    expect(r.connectBefore.status).toBe(200);
    // After it: refused by address, with the rule and the address named.
    const refused = (rule: string, address: string): unknown => ({ status: 403, body: expect.objectContaining({ error: 'forbidden_destination', rule, address }) as unknown });
    expect(r.after).toEqual(refused('cloud-metadata', '169.254.169.254'));
    expect(r.connectAfter).toEqual(refused('cloud-metadata', '169.254.169.254'));
    expect(r.mixed).toEqual(refused('cloud-metadata', '169.254.169.254'));
    expect(r.v6meta).toEqual(refused('cloud-metadata', 'fd00:ec2::254'));
    expect(r.loop).toEqual(refused('loopback', '127.0.0.1'));
    expect(r.allowed).toEqual({ status: 200, body: 'external ok (Host allowed.test)' });
    // The metadata and loopback listeners were never connected to.
    expect(r.forbiddenReached).toEqual([]);
    // The sidecar's log names the address each external connection was made to.
    expect(r.dialled).toEqual([
      { msg: 'external connection opened', host: 'rebind.test', address: '10.77.9.1' },
      { msg: 'tunnel opened', host: 'allowed.test', address: '10.77.9.1' },
      { msg: 'external connection opened', host: 'allowed.test', address: '10.77.9.1' },
    ]);
  });
});
