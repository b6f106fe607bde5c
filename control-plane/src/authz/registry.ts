import type { Labels } from '@airlock/common/labels';
import { formatSpiffeId, type SpiffeId } from '@airlock/common/spiffe';
import { toAgent, toHost, type Destination } from '../policy/engine.ts';
import type { AgentRecord, Store } from '../store/store.ts';

/**
 * The agent a mesh host names, if registered. A mesh host is `<sa>.<ns>` (see meshHostOf): the
 * namespace is a DNS label without dots, so the last label is the namespace and the rest the
 * service account. The host maps to one SPIFFE ID, so no agent can claim another's name.
 */
export function lookupMeshHost(store: Store, trustDomain: string, host: string): { id: SpiffeId; agent: AgentRecord } | undefined {
  const h = host.toLowerCase().replace(/\.$/, '');
  const dot = h.lastIndexOf('.');
  if (dot <= 0) return undefined;
  let uri: string;
  try {
    uri = formatSpiffeId(trustDomain, h.slice(dot + 1), h.slice(0, dot));
  } catch {
    return undefined; // not of the shape of a mesh host: an external host
  }
  const agent = store.getAgent(uri);
  if (agent === undefined) return undefined;
  return { id: { trustDomain, namespace: h.slice(dot + 1), serviceAccount: h.slice(0, dot), uri }, agent };
}

/**
 * Where an OUTBOUND call (or an explained one) to `host` goes: the registered agent its mesh host
 * names (then policies to segments apply; `agent` is its record, for the upstream address), else
 * that external host (policies to hosts apply). Its labels are taken when the engine wants them.
 */
export function destinationOfHost(store: Store, trustDomain: string, host: string, withLabels: boolean): { destination: Destination; agent: AgentRecord | undefined } {
  const mesh = lookupMeshHost(store, trustDomain, host);
  if (mesh === undefined) return { destination: toHost(host), agent: undefined };
  return { destination: toAgent(mesh.id, withLabels ? (mesh.agent.labels ?? {}) : undefined), agent: mesh.agent };
}

/** An agent as the destination (an INBOUND call's receiving agent), with its stored labels when wanted. */
export function agentDestination(store: Store, id: SpiffeId, withLabels: boolean): Destination {
  return toAgent(id, withLabels ? labelsOf(store, id) : undefined);
}

/** An agent's stored labels (none for an unregistered one). */
export function labelsOf(store: Store, id: SpiffeId): Labels {
  return store.getAgent(id.uri)?.labels ?? {};
}
