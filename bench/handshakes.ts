// mTLS handshakes/s with RSA-2048 vs ECDSA P-256 SVIDs (both sides), as sidecars make them:
// `node bench/handshakes.ts [seconds per key type, default 5]`. Client and server are in this one
// process, so the CPU per handshake counts both ends; every connection is a full handshake (no
// session resumption), TLS 1.3 as the sidecars speak it. The CA's key is RSA in both cases.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { CertificateAuthority } from '../control-plane/src/ca/ca.ts';
import { newKeyAndCsr, type KeyType } from '../sidecar/src/identity/key-and-csr.ts';

const SECONDS = Number(process.argv[2] ?? 5);
const dir = mkdtempSync(join(tmpdir(), 'airlock-handshakes-'));
const ca = CertificateAuthority.loadOrCreate(dir, 'bench.test');

async function svid(keyType: KeyType, sa: string): Promise<{ key: string; cert: string }> {
  const { keyPem, csrPem } = await newKeyAndCsr(keyType);
  return { key: keyPem, cert: ca.issueSvid(csrPem, `spiffe://bench.test/ns/bench/sa/${sa}`, 3_600_000).chainPem };
}

async function measure(keyType: KeyType): Promise<{ perSecond: number; cpuMsPerHandshake: number }> {
  const server = createServer({ ...(await svid(keyType, 'server')), ca: ca.certPem, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' }, (s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  const client = await svid(keyType, 'client');
  const once = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s: TLSSocket = connect({ host: '127.0.0.1', port: address.port, ...client, ca: ca.certPem, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined }, () => {
        s.destroy();
        resolve();
      });
      s.on('error', reject);
    });
  for (let i = 0; i < 50; i++) await once(); // warm-up
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < SECONDS * 1000) {
    await once();
    n++;
  }
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  server.close();
  return { perSecond: n / elapsed, cpuMsPerHandshake: (cpu.user + cpu.system) / 1000 / n };
}

try {
  const rsa = await measure('rsa-2048');
  const ec = await measure('ecdsa-p256');
  const row = (name: string, m: { perSecond: number; cpuMsPerHandshake: number }): string =>
    `${name.padEnd(11)} ${m.perSecond.toFixed(0).padStart(8)} handshakes/s ${m.cpuMsPerHandshake.toFixed(2).padStart(7)} ms CPU per handshake (both ends)`;
  console.log(row('RSA-2048', rsa));
  console.log(row('ECDSA P-256', ec));
  console.log(`P-256: ${(ec.perSecond / rsa.perSecond).toFixed(2)}x the handshakes/s, ${(100 * (1 - ec.cpuMsPerHandshake / rsa.cpuMsPerHandshake)).toFixed(0)}% less CPU per handshake`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
