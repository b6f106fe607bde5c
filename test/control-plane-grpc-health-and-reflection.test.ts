// Issue 10 item 5: grpc.health.v1.Health on the control plane's gRPC port, for grpc_health_probe and
// gRPC load balancers, callable over TLS without a client certificate (the port asks for one but
// requires none: a sidecar's first SignCertificate has none); server reflection only when asked for.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Client, ClientReadableStream } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RESEARCHERS_TO_EXAMPLE, startTestControlPlane, type TestControlPlane } from '../control-plane/src/testing/test-control-plane.ts';
import { HEALTH_PROTO, REFLECTION_PROTO, healthCheck, serviceClient } from './support/grpc-health.ts';

const PROBE_VERSION = 'v0.4.63';

/** grpc_health_probe, built once from the Go module proxy into the tools cache (as scripts/k8s-tools.sh does for helm). */
function probeBinary(): string | undefined {
  const dir = join(process.env['AIRLOCK_TOOLS_DIR'] ?? join(homedir(), '.cache', 'airlock-tools'), `grpc-health-probe-${PROBE_VERSION}`);
  const bin = join(dir, 'grpc-health-probe');
  if (existsSync(bin)) return bin;
  try {
    execFileSync('go', ['version'], { stdio: 'ignore' });
  } catch {
    if (process.env['CI'] === 'true') throw new Error('Go is required in CI to build grpc_health_probe');
    return undefined;
  }
  mkdirSync(dir, { recursive: true });
  execFileSync('go', ['install', `github.com/grpc-ecosystem/grpc-health-probe@${PROBE_VERSION}`], { env: { ...process.env, GOBIN: dir }, stdio: 'ignore', timeout: 300_000 });
  return bin;
}

describe('the control plane gRPC port', () => {
  let t: TestControlPlane;
  let withReflection: TestControlPlane;
  const clients: Client[] = [];
  beforeAll(async () => {
    t = await startTestControlPlane(RESEARCHERS_TO_EXAMPLE, 'airlock-health-');
    withReflection = await startTestControlPlane(RESEARCHERS_TO_EXAMPLE, 'airlock-reflection-', {}, { grpcReflection: 'on' });
  }, 60_000);
  afterAll(async () => {
    for (const c of clients) c.close();
    await t.close();
    await withReflection.close();
  });
  const health = (cp: TestControlPlane): Client & Record<string, (...args: unknown[]) => unknown> => {
    const c = serviceClient(HEALTH_PROTO, 'grpc.health.v1.Health', cp.cp.grpcPort, cp.cp.trustBundlePem);
    clients.push(c);
    return c;
  };

  it('answers grpc.health.v1.Health Check SERVING, for the server and each service, to a caller without a client certificate', async () => {
    const c = health(t);
    expect(await healthCheck(c, '')).toBe('SERVING');
    for (const s of ['airlock.authorization.v1.AuthorizationService', 'airlock.identity.v1.IdentityService', 'airlock.admin.v1.AdminService']) expect(await healthCheck(c, s)).toBe('SERVING');
    expect(await healthCheck(c, 'airlock.nothing.v1.Nope')).toMatch(/^error 5: /); // NOT_FOUND, as the protocol says
  });

  it('streams the status to Watch', async () => {
    const c = health(t);
    const first = await new Promise<string>((resolve, reject) => {
      const stream = c['watch']?.({ service: '' }) as ClientReadableStream<{ status: string }>;
      stream.on('data', (m: { status: string }) => {
        resolve(m.status);
        stream.cancel();
      });
      stream.on('error', (e: Error & { code: number }) => (e.code === 1 ? undefined : reject(e))); // 1: our own cancel
    });
    expect(first).toBe('SERVING');
  });

  it('is what grpc_health_probe checks with -tls and the CA, no client certificate', async () => {
    const bin = probeBinary();
    if (bin === undefined) return; // no Go on this developer machine (CI requires it)
    const ca = join(t.dataDir, 'ca.pem');
    const probe = (...args: string[]): Promise<{ code: number; out: string }> =>
      new Promise((resolve) => execFile(bin, [`-addr=127.0.0.1:${t.cp.grpcPort}`, '-tls', `-tls-ca-cert=${ca}`, '-tls-server-name=localhost', ...args], { timeout: 20_000 }, (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, out: stdout + stderr })));
    const ok = await probe();
    expect(ok.out).toMatch(/status: SERVING/);
    expect(ok.code).toBe(0);
    expect((await probe('-service=airlock.identity.v1.IdentityService')).code).toBe(0);
    // Without -tls the probe speaks plaintext to a TLS port: a failure, never a false SERVING.
    const plain = await new Promise<number>((resolve) => execFile(bin, [`-addr=127.0.0.1:${t.cp.grpcPort}`, '-connect-timeout=2s', '-rpc-timeout=2s'], { timeout: 20_000 }, (err) => resolve(err === null ? 0 : typeof err.code === 'number' ? err.code : -1)));
    expect(plain).not.toBe(0);
  }, 320_000);

  const listServices = (cp: TestControlPlane): Promise<string[] | string> => {
    const c = serviceClient(REFLECTION_PROTO, 'grpc.reflection.v1.ServerReflection', cp.cp.grpcPort, cp.cp.trustBundlePem);
    clients.push(c);
    return new Promise((resolve) => {
      const stream = c['serverReflectionInfo']?.() as ClientReadableStream<{ list_services_response?: { service: { name: string }[] } }> & { write(m: unknown): void; end(): void };
      stream.on('data', (m: { list_services_response?: { service: { name: string }[] } }) => resolve((m.list_services_response?.service ?? []).map((s) => s.name).sort()));
      stream.on('error', (e: { code: number }) => resolve(`error ${e.code}`));
      stream.write({ list_services: '*' });
      stream.end();
    });
  };

  it('serves no reflection by default', async () => {
    expect(await listServices(t)).toBe('error 12'); // UNIMPLEMENTED
  });

  it('serves reflection with grpcReflection on: the Airlock services, health and reflection', async () => {
    const services = await listServices(withReflection);
    expect(services).toEqual(expect.arrayContaining(['airlock.admin.v1.AdminService', 'airlock.authorization.v1.AuthorizationService', 'airlock.identity.v1.IdentityService']));
  });
});
