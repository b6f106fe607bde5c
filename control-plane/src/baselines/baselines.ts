import { Counter, Gauge, type Registry } from 'prom-client';
import { errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import type { AuditLog } from '../audit/event.ts';
import { overruled } from '../authz/contained.ts';
import { normalizeHost, type DecisionInput, type PolicyDecision, type PolicyEngine } from '../policy/engine.ts';
import type { BaselineDoc } from '../policy/baseline-doc.ts';
import type { BaselineRecord, Store } from '../store/store.ts';
import { flowOf } from './flows.ts';
import { Learner, MAX_FLOWS_PER_IDENTITY, MAX_IDENTITIES, type LearnerLimits } from './learner.ts';

/** How often learned changes are written to the store, as one batch. */
export const DEFAULT_FLUSH_MS = 5_000;

/** The call as baselines see it (an allowed OUTBOUND decision). */
export interface BaselineCall extends Pick<DecisionInput, 'source' | 'sourceLabels' | 'destination' | 'port' | 'method' | 'path'> {
  readonly decisionId: string;
  readonly mcpMethod: string;
  readonly mcpTool: string;
}

export interface BaselinesDeps {
  readonly store: Store;
  readonly audit: AuditLog;
  readonly registry: Registry;
  readonly logger: Logger;
  /** Quarantines an identity with an incident record (actor `baseline`); response `quarantine`. */
  readonly contain: (identity: string, reason: string) => Promise<void>;
  /** Whether it is quarantined already (nothing to set again). */
  readonly isQuarantined: (identity: string) => boolean;
  readonly limits?: LearnerLimits;
  readonly flushMs?: number;
}

/**
 * Behaviour baselines (README "Behaviour baselines"): each allowed OUTBOUND call of an identity a
 * Baseline document selects is learned (its flow and rate) for the document's `learn` period from
 * the identity's first call, then compared: a new flow or a rate over `rateFactor` × the learned peak
 * is an anomaly, audited (kind `anomaly`), counted (airlock_anomalies_total) and answered as the
 * document says (alert, deny the call, quarantine the agent). Learned in this replica's memory,
 * written to the store in batches every `flushMs` and read back at start.
 */
export class Baselines {
  readonly #d: BaselinesDeps;
  readonly #learner: Learner;
  readonly #anomalies: Counter<'response' | 'kind'>;
  readonly #dropped: Counter<'what'>;
  readonly #identities: Gauge;
  readonly #timer: NodeJS.Timeout;
  /** Identities a quarantine is being set for: set once. */
  readonly #containing = new Set<string>();
  #flushing: Promise<void> = Promise.resolve();

  private constructor(deps: BaselinesDeps) {
    this.#d = deps;
    const registers = [deps.registry];
    this.#anomalies = new Counter({ name: 'airlock_anomalies_total', help: 'Calls that departed from their identity\'s learned baseline (kind new-flow or rate), by what was done (dry-run counts as alert).', labelNames: ['response', 'kind'], registers });
    this.#dropped = new Counter({ name: 'airlock_baseline_dropped_total', help: 'Baseline entries not kept at a bound: a new flow of an identity holding baselineMaxFlows (what=flow), a new identity when baselineMaxIdentities are learned (what=identity).', labelNames: ['what'], registers });
    this.#identities = new Gauge({ name: 'airlock_baseline_identities', help: 'Identities whose behaviour baseline this replica holds.', registers });
    this.#learner = new Learner(deps.limits ?? { maxFlows: MAX_FLOWS_PER_IDENTITY, maxIdentities: MAX_IDENTITIES }, (what) => {
      this.#dropped.inc({ what });
      if (what === 'identity') deps.logger.warn({ limit: deps.limits?.maxIdentities ?? MAX_IDENTITIES }, 'an identity is not learned: the baselines hold the most identities they keep');
    });
    this.#timer = setInterval(() => void this.flush(), deps.flushMs ?? DEFAULT_FLUSH_MS);
    this.#timer.unref();
  }

  /** The baselines the store kept (a restart), then learning. */
  static async load(deps: BaselinesDeps): Promise<Baselines> {
    const b = new Baselines(deps);
    b.#learner.restore(await deps.store.listBaselines());
    b.#identities.set(b.#learner.size);
    return b;
  }

  /**
   * `decision` as the identity's baseline leaves it. Only allowed calls are learned and judged (a
   * denied call did not happen); `charged` false (an INBOUND check, a tools/list filter, a held call)
   * leaves it as it is.
   */
  observe(engine: PolicyEngine, call: BaselineCall, decision: PolicyDecision, charged: boolean, now = Date.now()): PolicyDecision {
    if (!charged || !decision.allow || engine.baselines.length === 0) return decision;
    const doc = selecting(engine, call);
    if (doc === undefined) return decision;
    const to = call.destination;
    const destination = to.kind === 'agent' ? to.id.uri : `${normalizeHost(to.host)}:${call.port}`;
    const flow = flowOf({ destination, method: call.method, path: call.path, mcpMethod: call.mcpMethod, mcpTool: call.mcpTool });
    const identity = call.source.uri;
    const seen = this.#learner.observe(identity, flow, doc.learnMs, doc.rateFactor, now);
    this.#identities.set(this.#learner.size);
    if (seen.kind !== 'new-flow' && seen.kind !== 'rate') return decision;
    const enforced = doc.mode === 'enforce';
    const response = enforced ? doc.response : 'alert';
    const why =
      seen.kind === 'new-flow'
        ? `new flow ${flow} (not used while learning)`
        : `rate ${seen.count} calls in ${seen.windowMs / 1000}s on ${flow}, over ${doc.rateFactor} × the learned peak of ${seen.peak}`;
    if (!seen.repeat) {
      this.#anomalies.inc({ response, kind: seen.kind });
      this.#d.audit.anomaly({ identity, baseline: doc.name, anomaly: seen.kind, flow, why, response, mode: doc.mode, decisionId: call.decisionId });
    }
    if (response === 'alert') return decision;
    if (response === 'quarantine') this.#contain(identity, doc.name, why);
    return overruled(decision, `anomaly: ${why}; Baseline "${doc.name}" says ${response}`);
  }

  /**
   * What another replica wrote (the store's watch; our own writes come back too and change nothing):
   * merged into this replica's baseline (flows united, peaks raised, accepted flows normal); a reset
   * there (`record` undefined) forgets it here.
   */
  follow(identity: string, record: BaselineRecord | undefined): void {
    if (record === undefined) this.#learner.reset(identity);
    else this.#learner.merge(record);
    this.#identities.set(this.#learner.size);
  }

  list(): BaselineRecord[] {
    return this.#learner.list();
  }

  get(identity: string): BaselineRecord | undefined {
    return this.#learner.get(identity);
  }

  /** Makes a flow of `identity` normal (an operator accepted the anomaly), written at once. False: no such flow learned. */
  async accept(identity: string, flow: string, by: string): Promise<boolean> {
    if (!this.#learner.accept(identity, flow, by, Date.now())) return false;
    await this.flush();
    return true;
  }

  /** Forgets `identity`'s baseline, here and in the store: it learns again from its next call. */
  async reset(identity: string): Promise<boolean> {
    await this.#flushing;
    const here = this.#learner.reset(identity);
    const stored = await this.#d.store.deleteBaseline(identity);
    this.#identities.set(this.#learner.size);
    return here || stored;
  }

  /** Writes what changed since the last write, as one batch; one write at a time. */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      const batch = this.#learner.takeDirty();
      if (batch.length === 0) return;
      try {
        await this.#d.store.putBaselines(batch);
      } catch (err) {
        this.#learner.markDirty(batch.map((r) => r.spiffeId));
        this.#d.logger.warn({ error: errorMessage(err), identities: batch.length }, 'cannot write behaviour baselines to the store; trying again at the next flush');
      }
    });
    return this.#flushing;
  }

  /** Stops the timer after a last write. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }

  #contain(identity: string, baseline: string, why: string): void {
    if (this.#containing.has(identity) || this.#d.isQuarantined(identity)) return;
    this.#containing.add(identity);
    this.#d
      .contain(identity, `anomaly: ${why} (Baseline "${baseline}")`.slice(0, 500))
      .catch((err: unknown) => this.#d.logger.error({ identity, error: errorMessage(err) }, 'cannot quarantine the agent whose behaviour departed from its baseline'))
      .finally(() => this.#containing.delete(identity));
  }
}

/** The first Baseline (in bundle order) selecting the source by one of its segments. */
function selecting(engine: PolicyEngine, call: BaselineCall): BaselineDoc | undefined {
  const segments = engine.segmentsOf(call.source, call.sourceLabels);
  if (segments.length === 0) return undefined;
  return engine.baselines.find((b) => b.fromSegments.some((s) => segments.includes(s)));
}
