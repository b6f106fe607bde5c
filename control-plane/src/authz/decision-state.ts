import type { ToolPinMap } from '../mcp-pins/tool-pins.ts';
import type { PolicyEngine } from '../policy/engine.ts';
import type { QuarantineSelectors } from '../incident/quarantine-target.ts';
import type { AgentRecord, QuarantineRecord } from '../store/store.ts';
import type { ThreatIndex } from '../threat-feeds/threat-index.ts';

/**
 * Everything a decision reads, as one immutable value: the compiled policy, the registered agents
 * (destinations by mesh host, labels), the revoked and the quarantined identities. Never read from the store.
 */
export interface DecisionSnapshot {
  readonly engine: PolicyEngine;
  readonly agents: ReadonlyMap<string, AgentRecord>;
  readonly revoked: ReadonlySet<string>;
  /** Quarantines set and not released; one whose `until` has passed no longer counts. */
  readonly quarantined: ReadonlyMap<string, QuarantineRecord>;
  /** MCP tool pins by server and tool (README "Tool pinning"); undefined = none loaded. */
  readonly toolPins?: ToolPinMap;
  /** The segment and label quarantines among them, compiled (incident/quarantine-target.ts); undefined: none. */
  readonly quarantineSelectors?: QuarantineSelectors;
  /** Every loaded threat feed's entries (ThreatFeeds); none until one loads. */
  readonly threats?: ThreatIndex;
}

/**
 * The snapshot in force. A change to any part (a policy version, an agent registered, an identity
 * revoked, here or through another replica) makes a new snapshot, swapped whole: a decision takes
 * one snapshot and sees the same state from its first read to its last. Parts are replaced, never
 * mutated, by their owners (PolicyStore, AgentRegistry, Revocations).
 */
export class DecisionState {
  #current: DecisionSnapshot;
  readonly #listeners = new Set<(part: Partial<DecisionSnapshot>) => void>();

  constructor(engine: PolicyEngine) {
    this.#current = Object.freeze({ engine, agents: new Map<string, AgentRecord>(), revoked: new Set<string>(), quarantined: new Map<string, QuarantineRecord>() });
  }

  current(): DecisionSnapshot {
    return this.#current;
  }

  replace(part: Partial<DecisionSnapshot>): void {
    this.#current = Object.freeze({ ...this.#current, ...part });
    for (const l of this.#listeners) l(part);
  }

  /** Calls `listener` with each part replaced (after the swap); returns an unsubscribe function. */
  onReplace(listener: (part: Partial<DecisionSnapshot>) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
