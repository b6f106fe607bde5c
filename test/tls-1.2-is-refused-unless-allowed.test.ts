import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createSecureContext, type SecureVersion } from 'node:tls';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthorizationServiceClient, AuthorizeRequest, Direction } from '@airlock/proto/authorization/v1';
import { adminPost } from '../cli/src/admin-client.ts';
import { CONTROL_PLANE_CHANNEL_OPTIONS } from '../sidecar/src/controlplane/credentials.ts';
import { caFromPem, type KeyAndCert } from '../sidecar/src/testing/certs.ts';
import { startMesh, type Mesh } from './support/mesh.ts';
import { STANDARD_POLICY } from './support/standard-mesh.ts';

/**
 * A client that speaks TLS 1.2 at most, holding a valid SVID, against the sidecar's inbound mTLS
 * listener and the control plane's gRPC port: refused by default (TLS 1.3 only), served when both
 * processes run with `tlsMinVersion: TLSv1.2` (the interop setting).
 */
function suite(name: string, o: { args: readonly string[]; tls12: 'refused' | 'served' }): void {
  describe(name, () => {
    let mesh: Mesh;
    let planner: KeyAndCert;
    beforeAll(async () => {
      mesh = await startMesh({ agents: ['planner', 'researcher'], policy: STANDARD_POLICY, controlPlaneArgs: o.args, sidecarArgs: o.args });
      planner = caFromPem(readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8'), readFileSync(join(mesh.dataDir, 'ca.key'), 'utf8')).issue({ uris: [mesh.agent('planner').identity] });
    });
    afterAll(async () => mesh.close());
    /** The trust bundle now (a root rollover adds a root). */
    const bundle = (): string => readFileSync(join(mesh.dataDir, 'trust-bundle.pem'), 'utf8');

    /** GET /v1/search on researcher's inbound port as planner; the status line, or why there is none. */
    function inbound(maxVersion: SecureVersion): Promise<string> {
      return new Promise((resolve) => {
        const socket = connect({ host: '127.0.0.1', port: mesh.agent('researcher').inboundPort, ca: bundle(), cert: planner.certPem, key: planner.keyPem, maxVersion, checkServerIdentity: () => undefined });
        let answer = '';
        let protocol = '';
        socket.on('secureConnect', () => {
          protocol = socket.getProtocol() ?? '';
          socket.write('GET /v1/search HTTP/1.1\r\nHost: researcher.agents\r\nConnection: close\r\n\r\n');
        });
        socket.on('data', (d: Buffer) => (answer += d.toString('utf8')));
        socket.on('error', (err: Error) => resolve(`refused: ${err.message}`));
        socket.on('close', () => resolve(answer === '' ? 'refused: closed' : `${protocol} ${answer.split('\r\n')[0] ?? ''}`));
      });
    }

    /** The serial of the certificate researcher's inbound listener presents now (over TLS 1.3). */
    function inboundSerial(): Promise<string> {
      return new Promise((resolve) => {
        const socket = connect({ host: '127.0.0.1', port: mesh.agent('researcher').inboundPort, ca: bundle(), cert: planner.certPem, key: planner.keyPem, checkServerIdentity: () => undefined });
        socket.on('secureConnect', () => {
          resolve(socket.getPeerCertificate().serialNumber);
          socket.destroy();
        });
        socket.on('error', (err: Error) => resolve(`refused: ${err.message}`));
      });
    }

    /** Authorize (about planner itself) over real gRPC as planner; the status code. */
    function grpc(maxVersion: SecureVersion): Promise<number> {
      const context = createSecureContext({ ca: bundle(), cert: planner.certPem, key: planner.keyPem, maxVersion });
      const client = new AuthorizationServiceClient(`127.0.0.1:${mesh.grpcPort}`, credentials.createFromSecureContext(context, { checkServerIdentity: () => undefined }), CONTROL_PLANE_CHANNEL_OPTIONS);
      const request = AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: mesh.agent('planner').identity, destinationHost: 'researcher.agents', destinationPort: 80, method: 'GET', path: '/v1/search' });
      return new Promise<number>((resolve) => {
        client.authorize(request, new Metadata(), { deadline: Date.now() + 10_000 }, (err: ServiceError | null) => resolve(err === null ? status.OK : err.code));
      }).finally(() => client.close());
    }

    it('serves TLS 1.3 on both (the control case)', async () => {
      expect(await inbound('TLSv1.3')).toBe('TLSv1.3 HTTP/1.1 200 OK');
      expect(await grpc('TLSv1.3')).toBe(status.OK);
    });

    if (o.tls12 === 'refused') {
      it('refuses a TLS 1.2 client at the inbound listener, and nothing reaches the app', async () => {
        const before = mesh.agent('researcher').received.length;
        expect(await inbound('TLSv1.2')).toMatch(/^refused: .*(protocol|version)/i);
        expect(mesh.agent('researcher').received.length).toBe(before);
      });
      it('refuses a TLS 1.2 client at the gRPC port', async () => {
        expect(await grpc('TLSv1.2')).toBe(status.UNAVAILABLE);
      });
      // Both servers replace their TLS context when certificates change; Node's setSecureContext
      // drops a version floor it is not given again.
      it('still refuses TLS 1.2 at both once the certificates changed (a root rollover, every SVID renewed)', async () => {
        const before = await inboundSerial();
        await adminPost(mesh.creds, '/v1/ca/prepare', {});
        await adminPost(mesh.creds, '/v1/ca/activate', { renewNow: true });
        await expect.poll(inboundSerial, { timeout: 20_000, interval: 200 }).not.toBe(before);
        expect(await grpc('TLSv1.3')).toBe(status.OK);
        expect(await grpc('TLSv1.2')).toBe(status.UNAVAILABLE);
        expect(await inbound('TLSv1.3')).toBe('TLSv1.3 HTTP/1.1 200 OK');
        expect(await inbound('TLSv1.2')).toMatch(/^refused: .*(protocol|version)/i);
      });
    } else {
      it('serves a TLS 1.2 client at both, and the mesh works', async () => {
        expect(await inbound('TLSv1.2')).toBe('TLSv1.2 HTTP/1.1 200 OK');
        expect(await grpc('TLSv1.2')).toBe(status.OK);
        expect((await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search')).status).toBe(200);
      });
    }
  });
}

suite('TLS 1.3 only, by default', { args: [], tls12: 'refused' });
suite('tlsMinVersion TLSv1.2, for interop', { args: ['--tls-min-version', 'TLSv1.2'], tls12: 'served' });
