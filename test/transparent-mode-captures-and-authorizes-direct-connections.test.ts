import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createPodNetwork, POD_NET } from './support/pod-netns.ts';

const run = promisify(execFile);

interface Answer {
  status?: number;
  body?: string;
  answer?: string;
  error?: string;
  failed?: string;
}

// Root only (ip netns, iptables): CI runs as root.
describe.skipIf(process.getuid?.() !== 0)('transparent mode, in two pods made of network namespaces', () => {
  it("lets the agent reach another pod only through its sidecar: direct connections are captured, judged by Host or SNI, allowed ones arrive, forbidden ones are refused", async () => {
    const net = await createPodNetwork();
    let stdout: string;
    try {
      const script = join(import.meta.dirname, 'support', 'transparent-mesh-in-netns.ts');
      ({ stdout } = await run('ip', ['netns', 'exec', net.peer, process.execPath, script, net.agent], { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }));
    } finally {
      await net.remove();
    }
    const r = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, Answer> & {
      error?: string;
      rules: { status: number; stderr: string };
      peerConnections: string[];
      peerRequests: { path: string; from: string; xfcc: string | undefined }[];
      externalRequests: { host: string | undefined; from: string; tls: boolean }[];
      planner: string;
    };
    expect(r.error).toBeUndefined();
    // Without the rules, the peer's app port is reachable straight over the veth: what the rules must stop.
    expect(r.beforeRules).toEqual({ status: 200, body: 'peer app: /before-rules' });
    expect(r.rules).toEqual({ status: 0, stderr: '' });

    // Plain HTTP to the peer pod's IP: captured and judged by Host; the allowed call arrives through
    // the peer's sidecar (mTLS: the peer's sidecar vouches for the agent's SPIFFE ID).
    expect(r.meshAllowed).toEqual({ status: 200, body: 'peer app: /v1/allowed' });
    expect(r.meshForbiddenPath).toMatchObject({ status: 403 });
    expect(JSON.parse(r.meshForbiddenPath?.body ?? '{}')).toMatchObject({ error: 'denied' });
    // Even as root, the app is captured.
    expect(r.meshAsRoot).toMatchObject({ status: 403 });
    // A Host that is the peer's IP names no agent and no allowed host: refused. No Host: refused.
    expect(r.meshHostIsIp).toMatchObject({ status: 403 });
    expect(r.meshNoHost).toMatchObject({ status: 400 });
    // Not HTTP, not TLS: refused by the sidecar, never passed on.
    expect(r.notHttp).toMatchObject({ status: 400 });
    // TLS to the peer: judged as CONNECT researcher.agents:443, which its policy does not allow (and
    // were it allowed, refused as TLS to a mesh host: the sidecar adds mTLS to plain HTTP).
    expect(r.tlsToPeer).toEqual({ error: 'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED' });

    // The peer's app port saw only its own sidecar: one call, the allowed one, vouched for by XFCC.
    expect(r.peerConnections.every((from) => from === '127.0.0.1')).toBe(true);
    expect(r.peerRequests).toEqual([{ path: '/v1/allowed', from: '127.0.0.1', xfcc: expect.stringContaining(`URI=${r.planner}`) as unknown }]);

    // An external host: by its IP with the name in Host or SNI; the allowed name is dialled directly
    // (the agent's TLS end to end, not terminated), the forbidden one never.
    expect(r.externalAllowed).toEqual({ status: 200, body: 'external ok' });
    expect(r.externalForbidden).toMatchObject({ status: 403 });
    expect(r.tlsAllowed).toEqual({ status: 200, body: 'external tls ok' });
    expect(r.tlsForbidden).toEqual({ error: 'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED' });
    expect(r.tlsNoSni).toEqual({ error: 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME' });
    expect(r.externalRequests).toEqual([
      { host: POD_NET.externalName, from: POD_NET.agentIp, tls: false },
      { host: POD_NET.externalName, from: POD_NET.agentIp, tls: true },
    ]);
  });
});
