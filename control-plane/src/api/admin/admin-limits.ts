import { AirlockError, ErrorCode, isAirlockError } from '@airlock/common/errors';
import type { AuditLog } from '../../audit/event.ts';
import type { PolicyStore, ChangeResult } from '../../policy/policy-store.ts';
import type { DocumentChange } from '../../policy/diff.ts';
import type { PolicyWorker } from '../../policy/worker/policy-workers.ts';
import type { Principal } from './admin-auth.ts';
import { HttpError } from './http-errors.ts';

/** A policy bundle's text, in bytes (HTTP bodies and gRPC messages alike). */
export const MAX_POLICY_BYTES = 1024 * 1024;

export interface AdminLimitsOptions {
  /** Policy changes are audit events: refusals by a limit go there too. */
  readonly audit: AuditLog;
  readonly policies: PolicyStore;
  readonly worker: PolicyWorker;
  /** Heavy admin requests in flight per caller (token or admin certificate). */
  readonly perCaller?: number;
  /** Heavy admin requests in flight in all. */
  readonly total?: number;
}

/**
 * The admin APIs' heavy work (a policy bundle to read), behind one set of limits for HTTP and gRPC:
 * a few requests in flight per caller and in all (beyond: AIRLOCK_TOO_MANY_REQUESTS, 429 /
 * RESOURCE_EXHAUSTED), the bundle read in the policy worker (never on the event loop that answers
 * Authorize), and every refusal by a limit written to the audit log (who, which route, why).
 */
export class AdminLimits {
  readonly #audit: AuditLog;
  readonly #policies: PolicyStore;
  readonly #worker: PolicyWorker;
  readonly #perCaller: number;
  readonly #total: number;
  readonly #inFlight = new Map<string, number>();
  #all = 0;

  constructor(o: AdminLimitsOptions) {
    this.#audit = o.audit;
    this.#policies = o.policies;
    this.#worker = o.worker;
    this.#perCaller = o.perCaller ?? 2;
    this.#total = o.total ?? 4;
  }

  /**
   * Runs `work` (reading the request included: a slot is taken before the body is buffered) for
   * `who` on `route`; a refusal by a limit, here or in `work`, is audited and thrown.
   */
  async run<T>(who: Principal, route: string, work: () => Promise<T>): Promise<T> {
    const held = this.#inFlight.get(who.name) ?? 0;
    try {
      if (held >= this.#perCaller) throw new AirlockError(ErrorCode.TooManyRequests, `"${who.name}" has ${this.#perCaller} policy requests in flight (the limit); retry when one ends`);
      if (this.#all >= this.#total) throw new AirlockError(ErrorCode.TooManyRequests, `${this.#total} policy requests are in flight (the limit); retry shortly`);
    } catch (err) {
      this.#refused(who, route, err);
      throw err;
    }
    this.#inFlight.set(who.name, held + 1);
    this.#all++;
    try {
      return await work();
    } catch (err) {
      this.#refused(who, route, err);
      throw err;
    } finally {
      this.#all--;
      const left = (this.#inFlight.get(who.name) ?? 1) - 1;
      if (left === 0) this.#inFlight.delete(who.name);
      else this.#inFlight.set(who.name, left);
    }
  }

  /** What applying `text` would change: `{ version, changes }`, read in the worker. */
  async diff(text: string, file: string): Promise<{ version: number; changes: readonly DocumentChange[] }> {
    const change = await this.#worker.prepare('diff', () => this.#policies.snapshot(), checkSize(text), file);
    return { version: change.version, changes: change.changes };
  }

  /** Applies `text`, read in the worker; read again (twice at most) if another change landed meanwhile. */
  async apply(text: string, file: string, actor: string): Promise<ChangeResult> {
    checkSize(text);
    for (let attempt = 1; ; attempt++) {
      const change = await this.#worker.prepare('apply', () => this.#policies.snapshot(), text, file);
      try {
        return await this.#policies.applyPrepared(change, file, actor);
      } catch (err) {
        if (!(isAirlockError(err) && err.code === ErrorCode.Conflict && attempt < 3)) throw err;
      }
    }
  }

  #refused(who: Principal, route: string, err: unknown): void {
    const limit = isAirlockError(err) && (err.code === ErrorCode.TooLarge || err.code === ErrorCode.TooManyRequests);
    if (!limit && !(err instanceof HttpError && err.status === 413)) return;
    const code = isAirlockError(err) ? err.code : 'payload_too_large';
    this.#audit.refusal({ operation: route, reasonCode: code, reason: (err as Error).message, caller: who.name });
  }
}

function checkSize(text: string): string {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_POLICY_BYTES) throw new AirlockError(ErrorCode.TooLarge, `the policy is ${bytes} bytes; the limit is ${MAX_POLICY_BYTES}`);
  return text;
}
