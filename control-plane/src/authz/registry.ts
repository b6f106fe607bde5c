import type { Labels } from '@airlock/common/labels';
import { parseSpiffeId, type SpiffeId } from '@airlock/common/spiffe';
import { toAgent, toHost, type Destination } from '../policy/engine.ts';
import type { AgentRecord, Store } from '../store/store.ts';
import type { DecisionState } from './decision-state.ts';

/** Where a decision finds a registered agent: in memory, never the store. */
export interface AgentLookup {
  get(spiffeId: string): AgentRecord | undefined;
}

/**
 * The registered agents, held in the decision snapshot (loaded from the store at start) because every
 * decision about an agent asks. A registration is written to the store first, then published as a
 * new snapshot; a renewal that changes neither address nor labels publishes nothing.
 */
export class AgentRegistry implements AgentLookup {
  readonly #store: Store;
  readonly #state: DecisionState;

  private constructor(store: Store, state: DecisionState) {
    this.#store = store;
    this.#state = state;
  }

  static async load(store: Store, state: DecisionState): Promise<AgentRegistry> {
    state.replace({ agents: new Map((await store.listAgents()).map((a) => [a.spiffeId, { ...a, labels: a.labels ?? {} }])) });
    return new AgentRegistry(store, state);
  }

  get(spiffeId: string): AgentRecord | undefined {
    return this.#state.current().agents.get(spiffeId);
  }

  /** Every agent, by SPIFFE ID. */
  list(): AgentRecord[] {
    return [...this.#state.current().agents.values()].sort((a, b) => (a.spiffeId < b.spiffeId ? -1 : a.spiffeId > b.spiffeId ? 1 : 0));
  }

  /** An agent another replica registered, as stored (its labels already merged there). */
  follow(agent: AgentRecord): void {
    this.#publish({ ...agent, labels: agent.labels ?? {} });
  }

  /** As Store.upsertAgent: an upsert without labels (a renewal) keeps those registered. */
  async upsert(agent: AgentRecord): Promise<void> {
    await this.#store.upsertAgent(agent);
    this.#publish({ ...agent, labels: agent.labels ?? this.get(agent.spiffeId)?.labels ?? {} });
  }

  #publish(agent: AgentRecord): void {
    const before = this.get(agent.spiffeId);
    if (before !== undefined && before.inboundAddress === agent.inboundAddress && sameLabels(before.labels ?? {}, agent.labels ?? {})) return;
    this.#state.replace({ agents: new Map(this.#state.current().agents).set(agent.spiffeId, agent) });
  }
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}

/**
 * The agent a mesh host names, if registered. A mesh host is `<sa>.<ns>` (see meshHostOf): the
 * namespace is a DNS label without dots, so the last label is the namespace and the rest the
 * service account. The host maps to one SPIFFE ID, so no agent can claim another's name.
 */
export function lookupMeshHost(agents: AgentLookup, trustDomain: string, host: string): { id: SpiffeId; agent: AgentRecord } | undefined {
  const lower = host.toLowerCase();
  const h = lower.endsWith('.') ? lower.slice(0, -1) : lower;
  const dot = h.lastIndexOf('.');
  if (dot <= 0) return undefined;
  // Looked up before it is parsed (a mesh call per decision: parsing was ~5 % of one); a string
  // that names no registered agent is an external host either way.
  const uri = `spiffe://${trustDomain}/ns/${h.slice(dot + 1)}/sa/${h.slice(0, dot)}`;
  const agent = agents.get(uri);
  if (agent === undefined) return undefined;
  let id = parsedIds.get(agent);
  if (id?.uri !== uri) {
    try {
      id = parseSpiffeId(uri);
    } catch {
      return undefined; // not of the shape of a mesh host: an external host
    }
    parsedIds.set(agent, id);
  }
  return { id, agent };
}

/** The identity of each registered agent's record, parsed once (a record is replaced when it changes, never edited). */
const parsedIds = new WeakMap<AgentRecord, SpiffeId>();

/**
 * Where an OUTBOUND call (or an explained one) to `host` goes: the registered agent its mesh host
 * names (then policies to segments apply; `agent` is its record, for the upstream address), else
 * that external host (policies to hosts apply). Its labels are taken when the engine wants them.
 */
export function destinationOfHost(agents: AgentLookup, trustDomain: string, host: string, withLabels: boolean): { destination: Destination; agent: AgentRecord | undefined } {
  const mesh = lookupMeshHost(agents, trustDomain, host);
  if (mesh === undefined) return { destination: toHost(host), agent: undefined };
  return { destination: toAgent(mesh.id, withLabels ? (mesh.agent.labels ?? {}) : undefined), agent: mesh.agent };
}

/** An agent as the destination (an INBOUND call's receiving agent), with its stored labels when wanted. */
export function agentDestination(agents: AgentLookup, id: SpiffeId, withLabels: boolean): Destination {
  return toAgent(id, withLabels ? labelsOf(agents, id) : undefined);
}

/** An agent's stored labels (none for an unregistered one). */
export function labelsOf(agents: AgentLookup, id: SpiffeId): Labels {
  return agents.get(id.uri)?.labels ?? {};
}
