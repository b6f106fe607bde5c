import { status, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { DEFAULT_TLS_MIN_VERSION, type TlsMinVersion } from '@airlock/common/config';
import { MAX_AUTHZ_CHECKS_PER_MESSAGE } from '@airlock/common/headers';
import { type AuthorizeCheck, type AuthorizeStreamRequest, type AuthorizeStreamResponse } from '@airlock/proto/authorization/v1';
import { AuthorizationClient } from '@airlock/proto/authorization/v1/stream';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials } from '../controlplane/credentials.ts';
import type { Svid, SvidSource } from '../identity/svid.ts';
import type { Authorizer, AuthzRequest, Decision } from './authorizer.ts';
import { describeFailure } from './grpc-unary-authorizer.ts';
import { noAnswer, toDecision, toProtoRequest, unavailable } from './proto-mapping.ts';

export interface GrpcStreamAuthorizerOptions {
  /** host:port of the control plane. */
  readonly address: string;
  readonly controlPlaneId: string;
  /** Lowest TLS version towards the control plane (setting tlsMinVersion; default TLS 1.3). */
  readonly tlsMinVersion?: TlsMinVersion;
  readonly identity: SvidSource;
  /** Per-call deadline (unless a call gives its own): no answer in time means 503 (fail closed). */
  readonly timeoutMs: number;
  /** Told the size of every batch sent (a metric). */
  readonly onBatch?: (checks: number) => void;
}

type Stream = ClientDuplexStream<AuthorizeStreamRequest, AuthorizeStreamResponse>;

interface Pending {
  readonly resolve: (d: Decision) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
  readonly timeoutMs: number;
  /** The stream the check went out on; undefined while it waits in the queue. */
  stream: Stream | undefined;
  /** How many messages the open stream had delivered when the check went out. */
  heardWhenSent: number;
}

/** More checks than this go out as several messages (the control plane's bound; far below gRPC's 4 MiB message limit). */
const MAX_BATCH = MAX_AUTHZ_CHECKS_PER_MESSAGE;

/**
 * Authorize as messages on one long-lived bidirectional stream over mTLS with our SVID. The calls
 * that arrive in one event-loop turn go out as one message, flushed with setImmediate (each
 * connection is parsed in its own I/O callback, so a microtask flush would send batches of one).
 * Every call still gets its own fresh decision, matched by id; nothing is cached.
 *
 * Fail closed: each call has its own deadline; a stream that breaks rejects everything pending on
 * it with AIRLOCK_AUTHZ_UNAVAILABLE, and the next call opens a new one. A stream that lets a call's
 * deadline pass without delivering anything since that call was sent is presumed stuck (a frozen
 * control plane) and is cancelled, so a later call does not wait behind it. A new SVID opens a new
 * channel; checks already sent on the old one still get their answers there.
 */
export class GrpcStreamAuthorizer implements Authorizer {
  readonly #o: GrpcStreamAuthorizerOptions;
  readonly #pending = new Map<number, Pending>();
  #queue: AuthorizeCheck[] = [];
  #flushScheduled = false;
  #nextId = 0;
  #client: AuthorizationClient | undefined;
  #clientSvid: Svid | undefined;
  #stream: Stream | undefined;
  /** Messages delivered by the open stream (for the stuck-stream rule). */
  #heard = 0;

  constructor(o: GrpcStreamAuthorizerOptions) {
    this.#o = o;
  }

  authorize(request: AuthzRequest, timeoutMs = this.#o.timeoutMs): Promise<Decision> {
    if (this.#o.identity.current() === undefined) return Promise.reject(unavailable('no SVID yet'));
    return new Promise<Decision>((resolve, reject) => {
      this.#nextId = (this.#nextId + 1) >>> 0 || 1;
      const id = this.#nextId;
      const timer = setTimeout(() => this.#expire(id), timeoutMs);
      this.#pending.set(id, { resolve, reject, timer, timeoutMs, stream: undefined, heardWhenSent: 0 });
      this.#queue.push({ id, request: toProtoRequest(request) });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  close(): void {
    this.#queue = [];
    const stream = this.#stream;
    this.#stream = undefined;
    stream?.cancel();
    this.#client?.close();
    this.#client = undefined;
    this.#clientSvid = undefined;
    // No answer: when only this endpoint is closed (it left the endpoint list), another may answer.
    for (const id of [...this.#pending.keys()]) this.#settle(id, noAnswer('the stream to this control-plane endpoint was closed'));
  }

  /** Sends every queued check (still pending: a check may have expired in the queue). */
  #flush(): void {
    this.#flushScheduled = false;
    const queued = this.#queue;
    this.#queue = [];
    const checks: AuthorizeCheck[] = [];
    const sent: Pending[] = [];
    for (const c of queued) {
      const p = this.#pending.get(c.id);
      if (p === undefined) continue;
      checks.push(c);
      sent.push(p);
    }
    if (checks.length === 0) return;
    let stream: Stream;
    try {
      stream = this.#openStream();
    } catch (err) {
      for (const c of checks) this.#settle(c.id, err instanceof Error ? err : unavailable(String(err)));
      return;
    }
    for (const p of sent) {
      p.stream = stream;
      p.heardWhenSent = this.#heard;
    }
    for (let i = 0; i < checks.length; i += MAX_BATCH) {
      const batch = checks.length <= MAX_BATCH ? checks : checks.slice(i, i + MAX_BATCH);
      this.#o.onBatch?.(batch.length);
      stream.write({ checks: batch });
    }
  }

  /** The open stream, or a new one on a channel built from the current SVID. */
  #openStream(): Stream {
    const svid = this.#o.identity.current();
    if (svid === undefined) throw unavailable('no SVID yet');
    if (this.#client === undefined || this.#clientSvid !== svid) {
      // A renewed certificate needs new credentials. The old stream is half-closed, not cut:
      // its checks in flight are still answered; the control plane then ends it.
      this.#stream?.end();
      this.#stream = undefined;
      const old = this.#client;
      this.#client = new AuthorizationClient(this.#o.address, controlPlaneCredentials(svid.trustBundlePem, this.#o.controlPlaneId, this.#o.tlsMinVersion ?? DEFAULT_TLS_MIN_VERSION, svid), CONTROL_PLANE_CHANNEL_OPTIONS);
      this.#clientSvid = svid;
      old?.close();
    }
    if (this.#stream !== undefined) return this.#stream;
    const stream = this.#client.authorizeStream();
    this.#stream = stream;
    stream.on('data', (msg: AuthorizeStreamResponse) => {
      if (this.#stream === stream) this.#heard++;
      for (const r of msg.results) {
        if (r.decision !== undefined) {
          const decision = toDecision(r.decision);
          // An answer we do not understand is no decision: fail closed.
          this.#settle(r.id, decision ?? unavailable(`control plane sent verdict ${r.decision.verdict}`));
        } else if (r.refusal !== undefined) {
          this.#settle(r.id, unavailable(`the control plane refused the check (gRPC code ${r.refusal.code}): ${r.refusal.message}`));
        } else {
          this.#settle(r.id, unavailable('control plane sent a result without an outcome'));
        }
      }
    });
    stream.on('error', (err: ServiceError) => this.#broken(stream, err));
    // The control plane ended the stream (e.g. our certificate expired, or after our own end()).
    stream.on('end', () => this.#broken(stream, { code: status.UNAVAILABLE, details: 'stream ended' } as ServiceError));
    return stream;
  }

  /** Everything pending on a broken stream fails closed; the next call opens a new stream. */
  #broken(stream: Stream, err: ServiceError): void {
    if (this.#stream === stream) this.#stream = undefined;
    for (const [id, p] of this.#pending) {
      if (p.stream !== stream) continue;
      const reason = err.code === status.CANCELLED ? `no decision from the control plane within ${p.timeoutMs} ms` : describeFailure(err, p.timeoutMs);
      this.#settle(id, noAnswer(reason, err));
    }
  }

  #expire(id: number): void {
    const p = this.#pending.get(id);
    if (p === undefined) return;
    this.#settle(id, noAnswer(`no decision from the control plane within ${p.timeoutMs} ms`));
    const stream = p.stream;
    if (stream === undefined || stream !== this.#stream) return;
    if (this.#heard === p.heardWhenSent) {
      this.#stream = undefined;
      stream.cancel();
    }
  }

  #settle(id: number, outcome: Decision | Error): void {
    const p = this.#pending.get(id);
    if (p === undefined) return; // answered after its deadline, or already failed
    this.#pending.delete(id);
    clearTimeout(p.timer);
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome);
  }
}
