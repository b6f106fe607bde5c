import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnAirlock, type AirlockProcess } from '../cli/src/demo/processes.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';

const AGENTS = ['alpha', 'beta'] as const;
const POLICY = policyYaml('agents', AGENTS, [{ name: 'alpha-to-beta', from: 'alpha', to: 'beta', methods: ['GET'], paths: ['/v1/*'] }]);
// What OpenSSL's own error text looks like ("error:0A000410:SSL routines:ssl3_read_bytes:sslv3 alert handshake failure").
const OPENSSL_TEXT = /SSL routines|alert|ssl3_|OPENSSL|ERR_SSL/i;

async function metricValue(url: string, line: RegExp): Promise<number> {
  const found = (await (await fetch(url)).text()).split('\n').find((l) => line.test(l));
  return found === undefined ? 0 : Number(found.slice(found.lastIndexOf(' ') + 1));
}

describe('a sidecar restarting at its advertised address, before it holds an SVID', () => {
  let mesh: Mesh;
  let restarted: AirlockProcess | undefined;
  beforeAll(async () => {
    mesh = await startMesh({ agents: AGENTS, policy: POLICY });
  });
  afterAll(async () => {
    await restarted?.stop();
    await mesh.close();
  });

  it('closes a peer\'s connections before the handshake, and the peer answers a clean 502 with nothing reaching the app', { timeout: 60_000 }, async () => {
    const beta = mesh.agent('beta');
    expect((await mesh.call('alpha', 'GET', 'http://beta.agents/v1/before')).status).toBe(200);
    const reached = beta.received.length;

    // beta's sidecar restarts on the inbound port the control plane holds for it, but cannot reach
    // the control plane (nothing listens on port 1), so it stays without an SVID: as a restart
    // looks while its SVID is being obtained.
    await beta.sidecar.stop();
    restarted = spawnAirlock('sidecar beta (restarted)', [
      'sidecar',
      '--trust-domain', mesh.trustDomain,
      '--control-plane', '127.0.0.1:1',
      '--ca-file', join(mesh.dataDir, 'trust-bundle.pem'),
      '--outbound-listen', '127.0.0.1:0',
      '--inbound-listen', `127.0.0.1:${beta.inboundPort}`,
      '--admin-listen', '127.0.0.1:0',
      '--app-port', String(beta.appPort),
    ], { logFile: join(mesh.dir, 'sidecar-beta-restarted.log'), env: { AIRLOCK_JOIN_TOKEN: await mesh.createJoinToken(beta.identity) } });
    const listening = await restarted.logLine('sidecar listening; obtaining an SVID');
    expect(Number(listening.inbound)).toBe(beta.inboundPort);
    await restarted.logLine('control plane unreachable; retrying');

    for (const path of ['/v1/during', '/v1/during-again']) {
      const res = await mesh.call('alpha', 'GET', `http://beta.agents${path}`);
      expect(res.status, res.text).toBe(502);
      const body = res.json<{ error: string; reason: string }>();
      expect(body.error).toBe('upstream_unavailable');
      expect(body.reason).toBe(`the peer sidecar at 127.0.0.1:${beta.inboundPort} refused the TLS handshake (it may be starting)`);
      expect(body.reason).not.toMatch(OPENSSL_TEXT);
    }
    expect(beta.received.length).toBe(reached);
    // Closed before any handshake (no certificate to answer with), and counted so.
    const admin = `http://127.0.0.1:${Number(listening.admin)}/metrics`;
    expect(await metricValue(admin, /^airlock_sidecar_inbound_rejected_total\{reason="not_ready"[,}]/)).toBeGreaterThanOrEqual(2);
    expect(await metricValue(admin, /^airlock_sidecar_inbound_rejected_total\{reason="handshake_failed"[,}]/)).toBe(0);
  });
});
