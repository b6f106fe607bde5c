import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { Registry } from 'prom-client';
import { createRootLogger, type Logger } from '@airlock/common/logging';
import { listen, boundPort } from '@airlock/common/net';
import type { Authorizer, AuthzRequest, Decision } from '../authz/authorizer.ts';
import type { Svid, SvidSource } from '../identity/svid.ts';
import type { Agent } from 'undici';
import { DestinationCheck, externalAgent, type DestinationCheckOptions } from '../outbound/destination-check.ts';
import { createSidecarMetrics, type SidecarMetrics } from '../telemetry/metrics.ts';
import type { TestCa } from './certs.ts';

/** Test doubles for the sidecar's seams: an SVID holder, an authorizer, an echoing app. */

export function svidFor(ca: TestCa, spiffeId: string): Svid {
  const { certPem, keyPem } = ca.issue({ uris: [spiffeId] });
  return { spiffeId, certChainPem: certPem, keyPem, trustBundlePem: ca.certPem, expiresAt: new Date(Date.now() + 3_600_000) };
}

export class StaticSvidSource implements SvidSource {
  svid: Svid | undefined;
  readonly #listeners = new Set<(svid: Svid) => void>();

  constructor(svid?: Svid) {
    this.svid = svid;
  }

  current(): Svid | undefined {
    return this.svid;
  }

  set(svid: Svid): void {
    this.svid = svid;
    for (const l of this.#listeners) l(svid);
  }

  onChange(listener: (svid: Svid) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** An in-process authorizer that answers with `decide` and records every request. */
export class FakeAuthorizer implements Authorizer {
  readonly requests: AuthzRequest[] = [];
  decide: (request: AuthzRequest) => Decision | Promise<Decision>;

  constructor(decide: (request: AuthzRequest) => Decision | Promise<Decision>) {
    this.decide = decide;
  }

  async authorize(request: AuthzRequest): Promise<Decision> {
    this.requests.push(request);
    return this.decide(request);
  }

  close(): void {
    // nothing to release
  }
}

export function allow(upstream?: { address: string; spiffeId: string }): Decision {
  return { allowed: true, decisionId: 'd-allow', reason: 'allowed by test', policy: 'test-allow', policyVersion: 1, rule: 'rules[0]', upstream, dryRunDeny: false, allowedTools: [] };
}

export function deny(reason = 'not in any allowed segment'): Decision {
  return { allowed: false, decisionId: 'd-deny', reason, policy: 'test-deny', policyVersion: 1, rule: 'rules[0]' };
}

export function quietLogger(): Logger {
  return createRootLogger({ process: 'test', level: 'silent' });
}

export function testMetrics(): { registry: Registry; metrics: SidecarMetrics } {
  const registry = new Registry();
  return { registry, metrics: createSidecarMetrics(registry) };
}

export interface EchoRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** An HTTP app on 127.0.0.1 that answers every request with what it received, as JSON. */
export async function startEchoApp(): Promise<{ server: Server; port: number }> {
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const echo: EchoRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() };
      const text = JSON.stringify(echo);
      res.writeHead(200, { 'content-type': 'application/json', 'x-app': 'echo', connection: 'keep-alive', 'keep-alive': 'timeout=5' });
      res.end(text);
    });
  });
  await listen(server, { host: '127.0.0.1', port: 0 });
  return { server, port: boundPort(server) };
}

/** A TCP server on 127.0.0.1 that writes back whatever it reads. */
export async function startTcpEcho(): Promise<{ server: TcpServer; port: number }> {
  const server = createTcpServer((socket) => socket.pipe(socket));
  await listen(server, { host: '127.0.0.1', port: 0 });
  return { server, port: boundPort(server) };
}

/** The destination check of a unit test, whose "external" servers listen on loopback: loopback explicitly allowed (egressAllowCidrs). */
/** Tests ask no real DNS (names are resolved before every outbound ask): localhost is loopback, any other name has no answer. */
function loopbackResolve(host: string): Promise<readonly string[]> {
  return host === 'localhost' ? Promise.resolve(['127.0.0.1']) : Promise.reject(new Error(`no test DNS answer for ${host}`));
}

export function loopbackDestinations(o: Partial<DestinationCheckOptions> = {}): { destinations: DestinationCheck; external: Agent } {
  const destinations = new DestinationCheck({ forbidCidrs: [], allowCidrs: ['127.0.0.0/8', '::1/128'], ownPorts: () => [], controlPlane: () => [], resolve: loopbackResolve, ...o });
  return { destinations, external: externalAgent(destinations, quietLogger()) };
}
