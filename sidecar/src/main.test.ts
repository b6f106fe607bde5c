import { writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '@airlock/common/errors';
import { sidecarConfig } from './config/config.ts';
import { advertisedInboundAddress, startSidecar } from './main.ts';
import { createTestCa } from './testing/certs.ts';
import { quietLogger } from './testing/fakes.ts';
import { rawRequest } from './testing/http-client.ts';

async function caFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-sidecar-'));
  const path = join(dir, 'ca.pem');
  await writeFile(path, createTestCa().certPem);
  return path;
}

function config(env: Record<string, string>) {
  return sidecarConfig.load({
    env: {
      AIRLOCK_TRUST_DOMAIN: 'airlock.test',
      AIRLOCK_OUTBOUND_LISTEN: '127.0.0.1:0',
      AIRLOCK_INBOUND_LISTEN: '127.0.0.1:0',
      AIRLOCK_ADMIN_LISTEN: '127.0.0.1:0',
      // Nothing listens here: the sidecar keeps retrying and stays not ready.
      AIRLOCK_CONTROL_PLANE: '127.0.0.1:1',
      ...env,
    },
  });
}

describe('startSidecar', () => {
  it('refuses to start without a join token, with a config error', async () => {
    await expect(startSidecar(config({ AIRLOCK_CA_FILE: await caFile() }), { logger: quietLogger() })).rejects.toBeInstanceOf(ConfigError);
  });

  it('refuses an unreadable caFile with a config error', async () => {
    await expect(startSidecar(config({ AIRLOCK_CA_FILE: '/nonexistent/ca.pem', AIRLOCK_JOIN_TOKEN: 't' }), { logger: quietLogger() })).rejects.toThrow(/caFile/);
  });

  it('takes the trust bundle as PEM text (caPem, as injection sets it), and refuses both, neither or a non-PEM', async () => {
    const pem = createTestCa().certPem;
    const sidecar = await startSidecar(config({ AIRLOCK_CA_PEM: pem, AIRLOCK_JOIN_TOKEN: 't' }), { logger: quietLogger() });
    await sidecar.close();
    await expect(startSidecar(config({ AIRLOCK_CA_PEM: pem, AIRLOCK_CA_FILE: await caFile(), AIRLOCK_JOIN_TOKEN: 't' }), { logger: quietLogger() })).rejects.toThrow(/give one/);
    await expect(startSidecar(config({ AIRLOCK_JOIN_TOKEN: 't' }), { logger: quietLogger() })).rejects.toThrow(/caFile \(or caPem\) is required/);
    await expect(startSidecar(config({ AIRLOCK_CA_PEM: 'not a pem', AIRLOCK_JOIN_TOKEN: 't' }), { logger: quietLogger() })).rejects.toThrow(/no PEM certificate/);
  });

  it('listens at once and answers not_ready until it holds an SVID', async () => {
    const sidecar = await startSidecar(config({ AIRLOCK_CA_FILE: await caFile(), AIRLOCK_JOIN_TOKEN: 't' }), { logger: quietLogger() });
    try {
      expect(sidecar.spiffeId()).toBeUndefined();
      const proxied = await rawRequest(sidecar.outboundPort, { target: 'http://bob.demo/' });
      expect(proxied.status).toBe(503);
      expect(JSON.parse(proxied.body)).toMatchObject({ error: 'not_ready' });
      const ready = await rawRequest(sidecar.adminPort, { target: '/readyz' });
      expect(ready.status).toBe(503);
      expect(JSON.parse(ready.body)).toMatchObject({ status: 'not ready' });
      expect((JSON.parse(ready.body) as { reason: string }).reason).toMatch(/^no SVID yet/);
      const metrics = await rawRequest(sidecar.adminPort, { target: '/metrics' });
      expect(metrics.body).toContain('airlock_sidecar_requests_total{direction="outbound",outcome="unavailable"');
    } finally {
      await sidecar.close();
    }
  });

  it('advertises loopback for wildcard listeners unless told otherwise', () => {
    expect(advertisedInboundAddress({ inboundAdvertise: undefined, inboundListen: { host: '0.0.0.0', port: 15006 } }, 15006)).toBe('127.0.0.1:15006');
    expect(advertisedInboundAddress({ inboundAdvertise: 'sidecar-b:15006', inboundListen: { host: '0.0.0.0', port: 0 } }, 4242)).toBe('sidecar-b:15006');
  });
});
