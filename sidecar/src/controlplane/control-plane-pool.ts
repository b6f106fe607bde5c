import type { Counter, Gauge } from 'prom-client';
import { parseHostPort } from '@airlock/common/config';
import { createRootLogger, type Logger } from '@airlock/common/logging';
import { ControlPlaneEndpoints } from './endpoints.ts';

/** What talks to the control plane: the label of the failovers counter (a fixed set). */
export type ControlPlaneClient = 'authorize' | 'sign' | 'trust_bundle';

export interface ControlPlanePoolMetrics {
  /** 1 healthy, 0 no answer since it last failed; label `endpoint`: the index in the endpoint list (bounded). */
  readonly endpointUp: Gauge<'endpoint'>;
  readonly failovers: Counter<'client'>;
}

export interface ControlPlanePoolOptions {
  readonly endpoints: ControlPlaneEndpoints;
  readonly logger: Logger;
  readonly metrics?: ControlPlanePoolMetrics;
  /** How long an endpoint that gave no answer is tried only after the others. */
  readonly downForMs?: number;
  /** How many healthy endpoints share the checks (each with its own stream); the others are spares. */
  readonly active?: number;
  /** Tests pin these. */
  readonly random?: () => number;
  readonly now?: () => number;
}

const DEFAULT_DOWN_FOR_MS = 1000;
const DEFAULT_ACTIVE = 2;

/**
 * Which control-plane endpoint to ask, for every client of the sidecar (authorization, certificate
 * signing, the trust-bundle stream): one health record and one order. An endpoint that gave no
 * answer is marked down for a while and tried last; after that it is tried again (the next answer
 * marks it healthy). Each sidecar starts its order at a random endpoint, so a fleet spreads over the
 * replicas rather than all on the first two.
 */
export class ControlPlanePool {
  readonly #o: ControlPlanePoolOptions;
  readonly #downUntil = new Map<string, number>();
  readonly #offset: number;
  readonly #unsubscribe: () => void;
  #turn = 0;

  constructor(o: ControlPlanePoolOptions) {
    this.#o = o;
    this.#offset = Math.floor((o.random ?? Math.random)() * 0x7fffffff);
    this.#unsubscribe = o.endpoints.onChange(() => this.#report());
    this.#report();
  }

  /**
   * Every endpoint, in the order to try them: one of the active healthy ones (taking turns, so
   * checks spread), the other active one, the other healthy ones, then those marked down (the one
   * back soonest first). Never empty.
   */
  candidates(): string[] {
    const all = this.#o.endpoints.current();
    const now = this.#now();
    const healthy: string[] = [];
    const down: string[] = [];
    for (let i = 0; i < all.length; i++) {
      const a = all[(i + this.#offset) % all.length] as string;
      if ((this.#downUntil.get(a) ?? 0) > now) down.push(a);
      else healthy.push(a);
    }
    down.sort((x, y) => (this.#downUntil.get(x) ?? 0) - (this.#downUntil.get(y) ?? 0));
    const active = healthy.slice(0, this.#o.active ?? DEFAULT_ACTIVE);
    const turn = active.length === 0 ? 0 : this.#turn++ % active.length;
    return [...active.slice(turn), ...active.slice(0, turn), ...healthy.slice(active.length), ...down];
  }

  /** The endpoint answered: healthy again if it was marked down. */
  answered(address: string): void {
    if (!this.#downUntil.delete(address)) return;
    this.#o.logger.info({ endpoint: this.#indexOf(address), address }, 'control-plane endpoint answers again');
    this.#report();
  }

  /** The endpoint gave no answer (unreachable, broken stream, deadline): tried last for a while. */
  noAnswer(address: string): void {
    // Logged and reported once per outage, not at every retry of a dead endpoint.
    const wasDown = this.#downUntil.has(address);
    this.#downUntil.set(address, this.#now() + (this.#o.downForMs ?? DEFAULT_DOWN_FOR_MS));
    if (wasDown) return;
    this.#o.logger.warn({ endpoint: this.#indexOf(address), address }, 'control-plane endpoint gave no answer; trying the others first');
    this.#report();
  }

  /** A request moved to another endpoint after one gave no answer. */
  failedOver(client: ControlPlaneClient): void {
    this.#o.metrics?.failovers.inc({ client });
  }

  /**
   * `attempt` on each endpoint in turn until one answers: an error `worthAnotherEndpoint` does not
   * accept (the control plane answered: a refusal) ends it. The last error if none answered.
   */
  async firstAnswer<T>(client: ControlPlaneClient, attempt: (address: string) => Promise<T>, worthAnotherEndpoint: (err: unknown) => boolean): Promise<T> {
    const candidates = this.candidates();
    let lastError: unknown;
    for (const [i, address] of candidates.entries()) {
      if (i > 0) this.failedOver(client);
      try {
        const result = await attempt(address);
        this.answered(address);
        return result;
      } catch (err) {
        if (!worthAnotherEndpoint(err)) throw err;
        this.noAnswer(address);
        lastError = err;
      }
    }
    throw lastError;
  }

  close(): void {
    this.#unsubscribe();
  }

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  #indexOf(address: string): number {
    return this.#o.endpoints.current().indexOf(address);
  }

  /** The health gauge by index: reset on every change, so an index never keeps a gone address's value. */
  #report(): void {
    const gauge = this.#o.metrics?.endpointUp;
    if (gauge === undefined) return;
    const all = this.#o.endpoints.current();
    for (const a of this.#downUntil.keys()) if (!all.includes(a)) this.#downUntil.delete(a);
    gauge.reset();
    const now = this.#now();
    all.forEach((a, i) => gauge.set({ endpoint: String(i) }, (this.#downUntil.get(a) ?? 0) > now ? 0 : 1));
  }
}

/**
 * One long-lived thing (a gRPC client, a stream) per control-plane address, made on first use and
 * closed when its address leaves the endpoint list.
 */
export class PerEndpoint<T extends { close(): void }> {
  readonly #items = new Map<string, T>();
  readonly #unsubscribe: () => void;

  constructor(endpoints: ControlPlaneEndpoints) {
    this.#unsubscribe = endpoints.onChange((addresses) => {
      for (const [a, item] of this.#items) {
        if (addresses.includes(a)) continue;
        this.#items.delete(a);
        item.close();
      }
    });
  }

  get(address: string, make: () => T): T {
    let item = this.#items.get(address);
    if (item === undefined) {
      item = make();
      this.#items.set(address, item);
    }
    return item;
  }

  /** Closes every item (new credentials: the next get() makes new ones). */
  clear(): void {
    for (const item of this.#items.values()) item.close();
    this.#items.clear();
  }

  close(): void {
    this.#unsubscribe();
    this.clear();
  }
}

/** The endpoints and pool of one control-plane address: for tools and tests that talk to one. */
export function oneControlPlane(address: string): { readonly endpoints: ControlPlaneEndpoints; readonly pool: ControlPlanePool } {
  const logger = createRootLogger({ process: 'sidecar', level: 'silent' });
  const endpoints = new ControlPlaneEndpoints({ configured: [parseHostPort(address)], refreshMs: 30_000, logger });
  return { endpoints, pool: new ControlPlanePool({ endpoints, logger }) };
}
