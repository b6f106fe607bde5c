import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ListenAddress, TlsMinVersion } from '@airlock/common/config';
import { errorMessage } from '@airlock/common/errors';
import type { LimitRefusal } from '@airlock/common/listener-limits';
import type { Logger } from '@airlock/common/logging';
import { sendJson } from '@airlock/common/telemetry';
import { readJson } from '../api/admin/admin-body.ts';
import { listenWithServingCertificate, type ServingCertificates, type ServingHttpsServer } from '../api/serving-https.ts';
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

export interface InjectionServerOptions {
  readonly address: ListenAddress;
  readonly serving: ServingCertificates;
  readonly tlsMinVersion: TlsMinVersion;
  readonly settings: InjectionSettings;
  /** The trust bundle now: what a sidecar injected now verifies the control plane with. */
  readonly trustBundlePem: () => string;
  readonly metrics: InjectionMetrics;
  /** Each connection the listener's limits cut (counted with the other listeners' cuts). */
  readonly refused?: (reason: LimitRefusal) => void;
  readonly logger: Logger;
}

/** What an error answer still reads of a request body it refused, before it resets the connection. */
const MAX_DRAIN_BYTES = 8 * 1024 * 1024;

function drainUnread(req: IncomingMessage): void {
  if (req.complete) return;
  let dropped = 0;
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > MAX_DRAIN_BYTES) req.socket.destroy();
  });
  req.resume();
}

export type InjectionServer = ServingHttpsServer;

/**
 * The webhook listener: HTTPS with the control plane's serving certificate (tlsMinVersion), POST
 * /inject. Each request is read (bounded), admitted, counted and answered; errors take one path.
 */
export async function startInjectionServer(o: InjectionServerOptions): Promise<InjectionServer> {
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
      if (a.kind === 'http') {
        // The connection closes after the answer; the rest of an unread body is read and dropped
        // meanwhile (at most MAX_DRAIN_BYTES), so the client gets the answer rather than a reset
        // for writing into a closed socket.
        res.setHeader('connection', 'close');
        drainUnread(req);
        sendJson(res, a.status, a.body);
      } else {
        sendJson(res, 200, reviewResponse(uid ?? '', { allowed: false, status: { code: a.code, message: a.message } }));
      }
    }
  }

  return listenWithServingCertificate({
    address: o.address,
    certificates: o.serving,
    tlsMinVersion: o.tlsMinVersion,
    handler: (req, res) => void handle(req, res),
    limits: { requestTimeoutMs: REQUEST_TIMEOUT_MS, headersTimeoutMs: HEADERS_TIMEOUT_MS, maxConnections: MAX_CONNECTIONS, tlsHandshakeTimeoutMs: HEADERS_TIMEOUT_MS },
    ...(o.refused === undefined ? {} : { refused: o.refused }),
  });
}
