import { createServer, type Server } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { quietLogger, testMetrics } from '../testing/fakes.ts';
import { EgressCa } from './egress-ca.ts';
import { parseAuthorityTarget } from './proxy-target.ts';
import { inspectTunnel } from './tls-inspect.ts';

/** inspectTunnel on a plain TCP listener standing for an answered CONNECT to api.example.test:443. */
describe('inspectTunnel', () => {
  const { metrics } = testMetrics();
  let ca: EgressCa;
  let server: Server;
  let port: number;
  const served: string[] = [];

  beforeAll(async () => {
    ca = await EgressCa.create({ minted: metrics.egressCertificatesMinted });
    server = createServer((socket) => {
      inspectTunnel({ egressCa: ca, metrics, logger: quietLogger() }, parseAuthorityTarget('api.example.test:443'), socket, Buffer.alloc(0), (tls: TLSSocket) => {
        served.push(`${tls.servername === false ? '' : tls.servername} ${tls.alpnProtocol === false ? '' : tls.alpnProtocol}`);
        tls.end('hello from inside');
      });
    });
    await listen(server, { host: '127.0.0.1', port: 0 });
    port = boundPort(server);
  });
  afterAll(async () => {
    await closeServer(server);
  });

  /** The client's view: what it read, or why its handshake failed. */
  const handshake = (o: { servername?: string; trust: boolean; alpn?: string[] }): Promise<string> =>
    new Promise((resolve) => {
      const tls = connect({ host: '127.0.0.1', port, ...(o.servername === undefined ? {} : { servername: o.servername }), ...(o.trust ? { ca: ca.certPem } : {}), ...(o.alpn === undefined ? {} : { ALPNProtocols: o.alpn }), checkServerIdentity: (host, cert) => (cert.subjectaltname === 'DNS:api.example.test' ? undefined : new Error(`cert for ${cert.subjectaltname}`)) });
      let text = '';
      let secure = false;
      tls.on('secureConnect', () => (secure = true));
      tls.on('data', (c: Buffer) => (text += c.toString()));
      tls.on('end', () => resolve(secure ? text : 'error: closed during the handshake'));
      tls.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
    });
  const count = async (result: string): Promise<number> => (await metrics.egressInspected.get()).values.find((v) => v.labels.result === result)?.value ?? 0;

  it('answers the CONNECT host with a leaf of the egress CA, ALPN http/1.1, and serves the stream', async () => {
    expect(await handshake({ servername: 'api.example.test', trust: true, alpn: ['h2', 'http/1.1'] })).toBe('hello from inside');
    expect(served.at(-1)).toBe('api.example.test http/1.1');
    expect(await handshake({ servername: 'API.Example.Test', trust: true })).toBe('hello from inside');
    expect(await count('inspected')).toBe(2);
    // One leaf for the name, cached.
    expect((await metrics.egressCertificatesMinted.get()).values[0]?.value).toBe(1);
  });

  it('refuses a TLS server name other than the CONNECT host, or none: no certificate, nothing served', async () => {
    const before = served.length;
    expect(await handshake({ servername: 'evil.example.test', trust: true })).toMatch(/^error/);
    expect(await count('sni_mismatch')).toBe(1);
    expect(await handshake({ trust: true })).toMatch(/^error/);
    expect(served.length).toBe(before);
  });

  it('a client that does not trust the egress CA fails its handshake at once, counted', async () => {
    const before = await count('handshake_failed');
    expect(await handshake({ servername: 'api.example.test', trust: false })).toBe('error UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(await handshake({ servername: 'api.example.test', trust: false })).toBe('error UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    // Counted when the sidecar sees the tunnel close.
    await vi.waitFor(async () => expect(await count('handshake_failed')).toBe(before + 2));
  });
});
