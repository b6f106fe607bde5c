import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

describe('the iptables rules of transparent mode, installed as the injected init container does', () => {
  it("send the app's TCP to the sidecar's capture port, let the sidecar's UID and loopback through, refuse other egress", async () => {
    // A namespace with a veth pair: 10.99.0.1 and fd00:99::1 stand for another pod, reachable by route only.
    const unshareFlags = process.getuid?.() === 0 ? ['-n'] : ['-r', '-n'];
    const script = join(import.meta.dirname, 'support', 'transparent-rules-in-netns.ts');
    const setup = [
      'ip link set lo up',
      'ip link add v0 type veth peer name v1',
      'ip link set v1 up',
      'ip link set v0 up',
      'ip addr add 10.99.0.2/24 dev v0',
      'ip -6 addr add fd00:99::2/64 dev v0 nodad',
      `exec "${process.execPath}" "${script}"`,
    ].join(' && ');
    const { stdout } = await run('unshare', [...unshareFlags, 'sh', '-c', setup], { timeout: 60_000 });
    const r = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, Record<string, unknown>>;
    expect(r.applied).toEqual({ status: 0, stderr: '' });
    // Any TCP destination of the app, as any app UID (root too), lands on 127.0.0.1:15002, the sidecar's capture listener.
    expect(r.appToPeer).toEqual({ connected: true, answer: 'captured' });
    expect(r.appToOtherPort).toEqual({ connected: true, answer: 'captured' });
    expect(r.appAsRootToPeer).toEqual({ connected: true, answer: 'captured' });
    // Loopback is not redirected.
    expect(r.appToLoopback).toEqual({ connected: true, answer: 'loopback' });
    // The sidecar's own SYN passes the owner rule and is not redirected: [lo, owner, redirect] counters.
    expect(r.sidecarSyn).toEqual({ sent: true });
    const { before, after } = r.sidecarCounters as { before: number[]; after: number[] };
    expect(after.map((n, i) => n - (before[i] ?? 0))).toEqual([0, 1, 0]);
    // Other egress of the app is refused, but DNS; the sidecar's is not.
    expect(r.appUdp).toEqual({ sent: false, error: 'EPERM' });
    expect(r.appDns).toEqual({ sent: true });
    expect(r.sidecarUdp).toEqual({ sent: true });
    // IPv6 is refused to the app, not redirected; the sidecar's passes.
    expect(r.appIpv6).toMatchObject({ connected: false });
    expect(r.sidecarIpv6Udp).toEqual({ sent: true });
  });
});
