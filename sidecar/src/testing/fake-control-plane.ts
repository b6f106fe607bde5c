import { X509Certificate } from 'node:crypto';
import { Server, ServerCredentials, status, type ServerDuplexStream, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData } from '@grpc/grpc-js';
import { AuthorizationServiceService, type AuthorizeRequest, type AuthorizeResponse, type AuthorizeResult, type AuthorizeStreamRequest, type AuthorizeStreamResponse } from '@airlock/proto/authorization/v1';
import { IdentityServiceService, type SignCertificateRequest, type SignCertificateResponse, type WatchTrustBundleRequest, type WatchTrustBundleResponse } from '@airlock/proto/identity/v1';
import { formatSpiffeId } from '@airlock/common/spiffe';
import type { TestCa } from './certs.ts';

/**
 * An in-process stand-in for the control plane's gRPC API, for tests whose subject is the sidecar's
 * side of the contract (TLS verification by SPIFFE ID, join token, Authorize fields).
 */
export interface FakeControlPlane {
  readonly port: number;
  readonly signRequests: SignCertificateRequest[];
  readonly authorizeRequests: AuthorizeRequest[];
  /** The identity a valid join token is bound to; other tokens get UNAUTHENTICATED. */
  tokens: Map<string, string>;
  /** How many of the next SignCertificate calls are recorded, then answered UNAVAILABLE (an answer lost). */
  failNextSigns: number;
  authorize: (request: AuthorizeRequest) => AuthorizeResponse | 'hang';
  /** Every message received on AuthorizeStream streams (one per batch the sidecar sent). */
  readonly streamMessages: AuthorizeStreamRequest[];
  /** Open AuthorizeStream calls, so a test can break them. */
  readonly streams: Set<ServerDuplexStream<AuthorizeStreamRequest, AuthorizeStreamResponse>>;
  /** Streams that stay open but never answer again (a frozen replica behind a live connection). */
  readonly frozenStreams: Set<ServerDuplexStream<AuthorizeStreamRequest, AuthorizeStreamResponse>>;
  /** Applied to the results of each batch before they are sent (reorder, split, drop). */
  streamReply: (results: AuthorizeResult[]) => AuthorizeResult[][];
  /** What each WatchTrustBundle call is sent when it opens (the call then stays open). */
  trustBundlePush: WatchTrustBundleResponse;
  /** How many WatchTrustBundle calls were opened. */
  trustBundleWatches: number;
  stop(): Promise<void>;
}

export function controlPlaneIdOf(trustDomain: string): string {
  return formatSpiffeId(trustDomain, 'airlock-system', 'airlock-control-plane');
}

export async function startFakeControlPlane(o: { ca: TestCa; servingId: string; port?: number; svidTtlMs?: number; requireClientCert?: boolean }): Promise<FakeControlPlane> {
  const caCert = new X509Certificate(o.ca.certPem);
  const serving = o.ca.issue({ uris: [o.servingId], dnsNames: ['localhost'], ips: ['127.0.0.1'] });
  const server = new Server();
  const cp: FakeControlPlane = {
    port: 0,
    signRequests: [],
    authorizeRequests: [],
    tokens: new Map(),
    failNextSigns: 0,
    authorize: (r) => ({ verdict: 1, decisionId: 'cp-1', reason: `allowed ${r.method}`, policy: 'p', upstream: undefined, dryRunDeny: false, policyVersion: 0, rule: '', mcpAllowedTools: [], tls: 0, ticket: '', approvalId: '', approvalWaitMs: 0, approvalOutcome: '', rateLimited: false, retryAfterMs: 0, addressesRequired: false, mcpBodyRequired: false }),
    streamMessages: [],
    streams: new Set(),
    frozenStreams: new Set(),
    streamReply: (results) => [results],
    trustBundlePush: { trustBundlePem: o.ca.certPem, revokedSpiffeIds: [], renewUnlessIssuedByPem: '', revokedCertificates: [], ticketKeys: [], quarantinedSpiffeIds: [], mcpBody: undefined },
    trustBundleWatches: 0,
    // Long-lived AuthorizeStream calls never end by themselves: cut them after a moment.
    stop: () =>
      new Promise((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 200);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
  server.addService(IdentityServiceService, {
    signCertificate(call: ServerUnaryCall<SignCertificateRequest, SignCertificateResponse>, cb: sendUnaryData<SignCertificateResponse>) {
      cp.signRequests.push(call.request);
      if (cp.failNextSigns > 0) {
        cp.failNextSigns--;
        cb({ code: status.UNAVAILABLE, details: 'the answer was lost' });
        return;
      }
      const id = cp.tokens.get(call.request.joinToken ?? '');
      if (id === undefined) {
        cb({ code: status.UNAUTHENTICATED, details: 'join token is not valid' });
        return;
      }
      cp.tokens.delete(call.request.joinToken ?? '');
      const ttl = o.svidTtlMs ?? 3_600_000;
      const cert = o.ca.signCsr(call.request.csrPem, { uris: [id], ttlMs: ttl });
      cb(null, { spiffeId: id, certChainPem: cert, trustBundlePem: o.ca.certPem, expiresAtUnixMs: Date.now() + ttl });
    },
    watchTrustBundle(call: ServerWritableStream<WatchTrustBundleRequest, WatchTrustBundleResponse>) {
      cp.trustBundleWatches++;
      call.write(cp.trustBundlePush);
    },
  });
  server.addService(AuthorizationServiceService, {
    authorize(call: ServerUnaryCall<AuthorizeRequest, AuthorizeResponse>, cb: sendUnaryData<AuthorizeResponse>) {
      // mTLS: the caller must have presented a certificate from the CA (grpc-js verified the chain).
      const peer = call.getAuthContext().sslPeerCertificate;
      if (peer === undefined || !new X509Certificate(peer.raw).verify(caCert.publicKey)) {
        cb({ code: status.UNAUTHENTICATED, details: 'client certificate required' });
        return;
      }
      cp.authorizeRequests.push(call.request);
      const answer = cp.authorize(call.request);
      if (answer !== 'hang') cb(null, answer);
    },
    authorizeStream(call: ServerDuplexStream<AuthorizeStreamRequest, AuthorizeStreamResponse>) {
      const peer = call.getAuthContext().sslPeerCertificate;
      if (peer === undefined || !new X509Certificate(peer.raw).verify(caCert.publicKey)) {
        call.emit('error', { code: status.UNAUTHENTICATED, details: 'client certificate required' });
        return;
      }
      cp.streams.add(call);
      call.on('data', (msg: AuthorizeStreamRequest) => {
        cp.streamMessages.push(msg);
        if (cp.frozenStreams.has(call)) return;
        const results: AuthorizeResult[] = [];
        for (const check of msg.checks) {
          if (check.request === undefined) continue;
          cp.authorizeRequests.push(check.request);
          const answer = cp.authorize(check.request);
          if (answer !== 'hang') results.push({ id: check.id, decision: answer, refusal: undefined });
        }
        for (const part of cp.streamReply(results)) if (part.length > 0) call.write({ results: part });
      });
      const done = (): void => {
        cp.streams.delete(call);
      };
      call.on('end', () => {
        done();
        call.end();
      });
      call.on('error', done);
      call.on('cancelled', done);
    },
  });
  // grpc-js either requires a client certificate or does not ask for one: tests of Authorize
  // require one (mTLS), tests of the first SignCertificate do not send one.
  const creds = ServerCredentials.createSsl(Buffer.from(o.ca.certPem), [{ private_key: Buffer.from(serving.keyPem), cert_chain: Buffer.from(serving.certPem) }], o.requireClientCert ?? false);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${o.port ?? 0}`, creds, (err, p) => (err === null ? resolve(p) : reject(err)));
  });
  return Object.assign(cp, { port });
}
