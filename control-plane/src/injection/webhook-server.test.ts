import { X509Certificate } from 'node:crypto';
import { connect } from 'node:tls';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createRootLogger } from '@airlock/common/logging';
import { boundPort } from '@airlock/common/net';
import { StaticCertificateProvider } from '../api/certificate-provider.ts';
import { CertificateAuthority } from '../ca/ca.ts';
import { parseInjectionSettings } from './injection-settings.ts';
import { createInjectionMetrics } from './metrics.ts';
import { startInjectionServer, type InjectionServer } from './webhook-server.ts';

const TD = 'airlock.test';
const SELF = `spiffe://${TD}/ns/airlock-system/sa/airlock-control-plane`;

/** The serial of the certificate the server presents to a new connection. */
function presentedSerial(port: number, caPem: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: caPem }, () => {
      const serial = s.getPeerX509Certificate()?.serialNumber ?? '';
      s.destroy();
      resolve(serial);
    });
    s.on('error', reject);
  });
}

describe('the injection webhook listener', () => {
  let running: InjectionServer | undefined;
  afterEach(async () => {
    await running?.close();
  });

  it('presents a renewed serving certificate to new connections without a restart', async () => {
    const { ca } = CertificateAuthority.createRoot(TD);
    const first = ca.issueServingCertificate(SELF, 3_600_000);
    const provider = new StaticCertificateProvider(ca.certPem, first.chainPem, first.keyPem);
    running = await startInjectionServer({
      address: { host: '127.0.0.1', port: 0 },
      serving: provider,
      tlsMinVersion: 'TLSv1.3',
      settings: parseInjectionSettings({ image: 'airlock:dev', controlPlane: '127.0.0.1:15012' }, TD),
      trustBundlePem: () => ca.certPem,
      metrics: createInjectionMetrics(new Registry()),
      logger: createRootLogger({ process: 't', level: 'silent' }),
    });
    const port = boundPort(running.server);
    expect(await presentedSerial(port, ca.certPem)).toBe(new X509Certificate(first.certPem).serialNumber);
    const next = ca.issueServingCertificate(SELF, 3_600_000);
    provider.update({ certPem: next.chainPem, keyPem: next.keyPem });
    expect(await presentedSerial(port, ca.certPem)).toBe(new X509Certificate(next.certPem).serialNumber);
  });
});
