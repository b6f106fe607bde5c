import type { Labels } from '@airlock/common/labels';
import { formatSpiffeId, type SpiffeId } from '@airlock/common/spiffe';
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

/** The stored labels of the source and destination agents (none for an unregistered one). */
export function agentLabels(store: Store, source: SpiffeId, destination: SpiffeId | undefined, destinationAgent?: AgentRecord): { sourceLabels: Labels; destinationLabels: Labels } {
  return {
    sourceLabels: store.getAgent(source.uri)?.labels ?? {},
    // An outbound mesh call already read the destination's record to find its address.
    destinationLabels: destination === undefined ? {} : ((destinationAgent ?? store.getAgent(destination.uri))?.labels ?? {}),
  };
}
