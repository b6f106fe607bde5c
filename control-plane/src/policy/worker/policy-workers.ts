import { Worker } from 'node:worker_threads';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import type { PolicySnapshot, PreparedChange } from '../change.ts';

export interface JobRequest {
  readonly id: number;
  readonly op: 'diff' | 'apply';
  readonly version: number;
  /** The set in force at `version`, when the worker does not hold it yet. */
  readonly snapshot?: PolicySnapshot;
  readonly text: string;
  readonly file: string;
}

export type JobReply =
  | { readonly id: number; readonly ok: true; readonly change: PreparedChange }
  | { readonly id: number; readonly ok: false; readonly code?: ErrorCode; readonly message: string };

export interface PolicyWorkerOptions {
  readonly logger: Logger;
  /** One bundle may take this long (the limits keep a bundle well under it); then the thread is ended. */
  readonly timeoutMs?: number;
  /** The thread's heap; over it the thread dies, the bundle is refused, and a new thread serves the next. */
  readonly maxHeapMb?: number;
  /** An idle thread is ended after this long (it costs ~30 MB), and started again when needed. */
  readonly idleMs?: number;
}

interface Job {
  readonly op: 'diff' | 'apply';
  readonly snapshot: () => PolicySnapshot;
  readonly text: string;
  readonly file: string;
  readonly resolve: (c: PreparedChange) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * One worker thread that reads admin-submitted policy bundles, one at a time, in order: the HTTP
 * and gRPC admin APIs both send their bundles here, so no bundle is parsed on the event loop that
 * answers Authorize. Bounded by the YAML limits (in the thread), a time limit and a heap limit; the
 * number waiting is bounded by the admin API's concurrency limit.
 */
export class PolicyWorker {
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #maxHeapMb: number;
  readonly #idleMs: number;
  readonly #queue: Job[] = [];
  #thread: { worker: Worker; version: number | undefined } | undefined;
  #running: { job: Job; id: number; timer: NodeJS.Timeout } | undefined;
  #idle: NodeJS.Timeout | undefined;
  #nextId = 1;
  #closed = false;

  constructor(o: PolicyWorkerOptions) {
    this.#log = o.logger;
    this.#timeoutMs = o.timeoutMs ?? 10_000;
    this.#maxHeapMb = o.maxHeapMb ?? 256;
    this.#idleMs = o.idleMs ?? 60_000;
  }

  /** Reads `text` against the set in force when its turn comes (`snapshot` is asked then). */
  prepare(op: 'diff' | 'apply', snapshot: () => PolicySnapshot, text: string, file: string): Promise<PreparedChange> {
    if (this.#closed) return Promise.reject(new AirlockError(ErrorCode.AuthzUnavailable, 'the control plane is shutting down'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ op, snapshot, text, file, resolve, reject });
      this.#next();
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#idle);
    for (const job of this.#queue.splice(0)) job.reject(new AirlockError(ErrorCode.AuthzUnavailable, 'the control plane is shutting down'));
    const running = this.#running;
    this.#running = undefined;
    if (running !== undefined) {
      clearTimeout(running.timer);
      running.job.reject(new AirlockError(ErrorCode.AuthzUnavailable, 'the control plane is shutting down'));
    }
    await this.#end();
  }

  #next(): void {
    if (this.#running !== undefined || this.#closed) return;
    const job = this.#queue.shift();
    if (job === undefined) {
      clearTimeout(this.#idle);
      this.#idle = setTimeout(() => void this.#end(), this.#idleMs).unref();
      return;
    }
    clearTimeout(this.#idle);
    const thread = this.#start();
    const snapshot = job.snapshot();
    const id = this.#nextId++;
    const timer = setTimeout(() => this.#fail(id, new AirlockError(ErrorCode.TooLarge, `the policy took longer than ${this.#timeoutMs / 1000} s to read (the limit)`)), this.#timeoutMs);
    this.#running = { job, id, timer };
    const request: JobRequest = { id, op: job.op, version: snapshot.version, text: job.text, file: job.file, ...(thread.version === snapshot.version ? {} : { snapshot }) };
    thread.version = snapshot.version;
    thread.worker.postMessage(request);
  }

  #start(): { worker: Worker; version: number | undefined } {
    if (this.#thread !== undefined) return this.#thread;
    const worker = new Worker(new URL('./policy-worker.ts', import.meta.url), { resourceLimits: { maxOldGenerationSizeMb: this.#maxHeapMb } });
    const thread = { worker, version: undefined };
    worker.unref();
    worker.on('message', (reply: JobReply) => {
      const running = this.#running;
      if (running?.id !== reply.id) return;
      clearTimeout(running.timer);
      this.#running = undefined;
      if (reply.ok) running.job.resolve(reply.change);
      else running.job.reject(reply.code === undefined ? new AirlockError(ErrorCode.Internal, 'the policy could not be read') : new AirlockError(reply.code, reply.message));
      if (!reply.ok && reply.code === undefined) this.#log.error({ error: reply.message }, 'policy worker failed');
      this.#next();
    });
    // A thread already ended (timeout, heap) may still report: only the current one's job is failed.
    worker.on('error', (err: Error & { code?: string }) => {
      const id = this.#thread?.worker === worker ? this.#running?.id : undefined;
      const tooLarge = err.code === 'ERR_WORKER_OUT_OF_MEMORY';
      if (!tooLarge) this.#log.error({ error: errorMessage(err) }, 'policy worker failed');
      if (id !== undefined) this.#fail(id, tooLarge ? new AirlockError(ErrorCode.TooLarge, `the policy needed more than ${this.#maxHeapMb} MB to read (the limit)`) : new AirlockError(ErrorCode.Internal, 'the policy could not be read'));
    });
    worker.on('exit', () => {
      if (this.#thread?.worker !== worker) return;
      this.#thread = undefined;
      const id = this.#running?.id;
      if (id !== undefined) this.#fail(id, new AirlockError(ErrorCode.Internal, 'the policy could not be read'));
    });
    this.#thread = thread;
    return thread;
  }

  /** Ends the running job with `err`, and its thread (whatever it was doing is abandoned). */
  #fail(id: number, err: AirlockError): void {
    const running = this.#running;
    if (running?.id !== id) return;
    clearTimeout(running.timer);
    this.#running = undefined;
    running.job.reject(err);
    void this.#end().then(() => this.#next());
  }

  async #end(): Promise<void> {
    const thread = this.#thread;
    this.#thread = undefined;
    if (thread !== undefined) await thread.worker.terminate();
  }
}
