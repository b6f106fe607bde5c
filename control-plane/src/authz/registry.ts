import type { Labels } from '@airlock/common/labels';
import { formatSpiffeId, type SpiffeId } from '@airlock/common/spiffe';
import { toAgent, toHost, type Destination } from '../policy/engine.ts';
import type { AgentRecord, Store } from '../store/store.ts';

/** Where a decision finds a registered agent: in memory, never the store. */
export interface AgentLookup {
  get(spiffeId: string): AgentRecord | undefined;
}

/**
 * The registered agents, held in memory (loaded from the store at start) because every decision
 * about an agent asks. A registration is written to the store first, then here.
 */
export class AgentRegistry implements AgentLookup {
  readonly #store: Store;
  readonly #agents = new Map<string, AgentRecord>();

  private constructor(store: Store) {
    this.#store = store;
  }

  static async load(store: Store): Promise<AgentRegistry> {
    const registry = new AgentRegistry(store);
    for (const a of await store.listAgents()) registry.#agents.set(a.spiffeId, a);
    return registry;
  }

  get(spiffeId: string): AgentRecord | undefined {
    return this.#agents.get(spiffeId);
  }

  /** Every agent, by SPIFFE ID. */
  list(): AgentRecord[] {
    return [...this.#agents.values()].sort((a, b) => (a.spiffeId < b.spiffeId ? -1 : a.spiffeId > b.spiffeId ? 1 : 0));
  }

  /** An agent another replica registered, as stored (its labels already merged there). */
  follow(agent: AgentRecord): void {
    this.#agents.set(agent.spiffeId, { ...agent, labels: agent.labels ?? {} });
  }

  /** As Store.upsertAgent: an upsert without labels (a renewal) keeps those registered. */
  async upsert(agent: AgentRecord): Promise<void> {
    await this.#store.upsertAgent(agent);
    this.#agents.set(agent.spiffeId, { ...agent, labels: agent.labels ?? this.#agents.get(agent.spiffeId)?.labels ?? {} });
  }
}

/**
 * The agent a mesh host names, if registered. A mesh host is `<sa>.<ns>` (see meshHostOf): the
 * namespace is a DNS label without dots, so the last label is the namespace and the rest the
 * service account. The host maps to one SPIFFE ID, so no agent can claim another's name.
 */
export function lookupMeshHost(agents: AgentLookup, trustDomain: string, host: string): { id: SpiffeId; agent: AgentRecord } | undefined {
  const h = host.toLowerCase().replace(/\.$/, '');
  const dot = h.lastIndexOf('.');
  if (dot <= 0) return undefined;
  let uri: string;
  try {
    uri = formatSpiffeId(trustDomain, h.slice(dot + 1), h.slice(0, dot));
  } catch {
    return undefined; // not of the shape of a mesh host: an external host
  }
  const agent = agents.get(uri);
  if (agent === undefined) return undefined;
  return { id: { trustDomain, namespace: h.slice(dot + 1), serviceAccount: h.slice(0, dot), uri }, agent };
}

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
