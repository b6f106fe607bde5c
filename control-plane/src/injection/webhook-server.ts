import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ListenAddress } from '@airlock/common/config';
import { errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { listen } from '@airlock/common/net';
import { sendJson } from '@airlock/common/telemetry';
import { readJson } from '../api/admin-body.ts';
import { readRequest, readReview, reviewResponse } from './admission-review.ts';
import { admit } from './admit.ts';
import { failureAnswer, InjectionError, InjectionFailure } from './injection-errors.ts';
import type { InjectionSettings } from './injection-settings.ts';
import type { InjectionMetrics } from './metrics.ts';

export const INJECT_PATH = '/inject';
/** An AdmissionReview of a pod: etcd stores at most 1.5 MiB per object, and the review holds one. */
const MAX_REVIEW_BYTES = 2 * 1024 * 1024;
/** The API server waits at most 30 s for a webhook (10 s by default); nothing of ours takes long. */
const REQUEST_TIMEOUT_MS = 15_000;
const HEADERS_TIMEOUT_MS = 5_000;
// Each connection may buffer a review of up to 2 MiB: 64 bound the memory to 128 MiB (the port is reachable in the cluster).
const MAX_CONNECTIONS = 64;

/** The serving certificate, replaced on renewal and root rollover (the control plane's StaticCertificateProvider). */
export interface ServingIdentity {
  addIdentityCertificateListener(listener: (update: { certificate: Buffer; privateKey: Buffer } | null) => void): void;
  removeIdentityCertificateListener(listener: (update: { certificate: Buffer; privateKey: Buffer } | null) => void): void;
}

export interface InjectionServerOptions {
  readonly address: ListenAddress;
  readonly serving: ServingIdentity;
  readonly settings: InjectionSettings;
  /** The trust bundle now: what a sidecar injected now verifies the control plane with. */
  readonly trustBundlePem: () => string;
  readonly metrics: InjectionMetrics;
  readonly logger: Logger;
}

export interface InjectionServer {
  readonly server: Server;
  close(): void;
}

/**
 * The webhook listener: HTTPS with the control plane's serving certificate, TLS 1.3 only, POST
 * /inject. Each request is read (bounded), admitted, counted and answered; errors take one path.
 */
export async function startInjectionServer(o: InjectionServerOptions): Promise<InjectionServer> {
  const first = await new Promise<{ certificate: Buffer; privateKey: Buffer }>((resolve) => {
    const once = (u: { certificate: Buffer; privateKey: Buffer } | null): void => {
      if (u === null) return;
      o.serving.removeIdentityCertificateListener(once);
      resolve(u);
    };
    o.serving.addIdentityCertificateListener(once);
  });
  const tls = (u: { certificate: Buffer; privateKey: Buffer }): { cert: Buffer; key: Buffer; minVersion: 'TLSv1.3' } => ({ cert: u.certificate, key: u.privateKey, minVersion: 'TLSv1.3' });
  const server = createServer({ ...tls(first), requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: HEADERS_TIMEOUT_MS }, (req, res) => {
    void handle(req, res);
  });
  server.maxConnections = MAX_CONNECTIONS;
  const renewed = (u: { certificate: Buffer; privateKey: Buffer } | null): void => {
    if (u !== null) server.setSecureContext(tls(u));
  };
  o.serving.addIdentityCertificateListener(renewed);
  const log = o.logger;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let uid: string | undefined;
    try {
      const path = (req.url ?? '').split('?')[0];
      if (path !== INJECT_PATH) throw new InjectionError(InjectionFailure.BadRequest, `no route for ${req.method ?? ''} ${path ?? ''}: the webhook is POST ${INJECT_PATH}`, 404);
      if (req.method !== 'POST') throw new InjectionError(InjectionFailure.BadRequest, `${INJECT_PATH} takes POST only`, 405);
      const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
      if (type !== 'application/json') throw new InjectionError(InjectionFailure.BadRequest, `the body must be application/json (an AdmissionReview), got "${type ?? ''}"`, 415);
      const review = readReview(await readJson(req, MAX_REVIEW_BYTES));
      uid = review.uid;
      const request = readRequest(review.uid, review.request);
      const { outcome, answer, reason } = admit(request, o.settings, o.trustBundlePem());
      o.metrics.requests.inc({ outcome });
      log.debug({ uid, namespace: request.namespace, outcome, reason }, 'admission review answered');
      sendJson(res, 200, reviewResponse(review.uid, answer));
    } catch (err) {
      const a = failureAnswer(err, uid);
      o.metrics.requests.inc({ outcome: a.outcome });
      if (a.outcome === 'internal_error') log.error({ uid, error: errorMessage(err) }, 'sidecar injection failed');
      else log.warn({ uid, outcome: a.outcome, reason: a.kind === 'http' ? a.body.reason : a.message }, 'admission review refused');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // The rest of an unread body cannot be skipped safely: close the connection after answering.
      if (a.kind === 'http') {
        res.setHeader('connection', 'close');
        sendJson(res, a.status, a.body);
      } else {
        sendJson(res, 200, reviewResponse(uid ?? '', { allowed: false, status: { code: a.code, message: a.message } }));
      }
    }
  }

  await listen(server, o.address);
  return {
    server,
    close() {
      o.serving.removeIdentityCertificateListener(renewed);
      server.close();
      server.closeAllConnections();
    },
  };
}
