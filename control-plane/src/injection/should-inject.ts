import { InjectionError, InjectionFailure, type Outcome } from './injection-errors.ts';
import type { InjectionSettings } from './injection-settings.ts';
import type { Pod } from './pod.ts';
import { resourcesProblems, type Resources } from './quantity.ts';
import { EGRESS_CA_VOLUME, INIT_CONTAINER, RESERVED_PORTS, SIDECAR_CONTAINER, SIDECAR_UID, TOKEN_VOLUME } from './sidecar-template.ts';

/** The label (on a namespace or pod) and annotations users set; the marker annotation we set. */
export const INJECT = 'airlock.dev/inject';
export const INJECTED = 'airlock.dev/injected';
export const APP_PORT = 'airlock.dev/app-port';
export const TRANSPARENT = 'airlock.dev/transparent';
const RESOURCE_ANNOTATIONS = {
  requests: { cpu: 'airlock.dev/sidecar-cpu-request', memory: 'airlock.dev/sidecar-memory-request' },
  limits: { cpu: 'airlock.dev/sidecar-cpu-limit', memory: 'airlock.dev/sidecar-memory-limit' },
} as const;

/** What this pod gets, from the settings and its annotations. */
export interface PodOptions {
  /** undefined: no annotation and no container port; the sidecar's default (8080) applies. */
  readonly appPort: number | undefined;
  readonly resources: Resources;
  readonly transparent: boolean;
}

export type Decision =
  | { readonly inject: false; readonly outcome: Extract<Outcome, 'disabled' | 'already_injected' | 'host_network'>; readonly reason: string }
  | { readonly inject: true; readonly options: PodOptions; readonly warnings: readonly string[] };

/**
 * Whether to inject into a pod the webhook's selectors sent us (a namespace or pod labelled
 * airlock.dev/inject=enabled), and with what. Left alone: a pod that opts out, one already injected
 * (re-admission), and a host-network pod (its iptables and ports are the node's). A bad annotation
 * refuses the pod (InjectionError) rather than silently injecting something else.
 */
export function shouldInject(pod: Pod, settings: InjectionSettings): Decision {
  const labels = pod.metadata?.labels ?? {};
  const annotations = pod.metadata?.annotations ?? {};
  if (labels[INJECT] === 'disabled' || annotations[INJECT] === 'disabled') return { inject: false, outcome: 'disabled', reason: `${INJECT} is "disabled"` };
  // Our sidecar, not the marker, says a pod is injected: a marker set by hand must not opt a pod out.
  if ((pod.spec.initContainers ?? []).some((c) => c.name === SIDECAR_CONTAINER)) return { inject: false, outcome: 'already_injected', reason: 'the pod already has the airlock sidecar' };
  if (pod.spec.hostNetwork === true) return { inject: false, outcome: 'host_network', reason: "a host-network pod shares the node's network: the sidecar cannot own its traffic" };

  const problems: string[] = [];
  const warnings: string[] = [];
  const names = [...pod.spec.containers, ...(pod.spec.initContainers ?? [])].map((c) => c.name);
  for (const reserved of [SIDECAR_CONTAINER, INIT_CONTAINER]) {
    if (names.includes(reserved)) problems.push(`the container name "${reserved}" is reserved for the injected sidecar`);
  }
  if ((pod.spec.volumes ?? []).some((v) => v.name === TOKEN_VOLUME)) problems.push(`the volume name "${TOKEN_VOLUME}" is reserved for the injected token`);
  if ((pod.spec.volumes ?? []).some((v) => v.name === EGRESS_CA_VOLUME)) problems.push(`the volume name "${EGRESS_CA_VOLUME}" is reserved for the injected egress CA`);
  // The token attests the pod to the control plane: a container holding it could get the pod's SVID
  // and call peers without its sidecar. Only the injected sidecar mounts it, and no other volume
  // projects a token for Airlock's audience.
  for (const c of [...pod.spec.containers, ...(pod.spec.initContainers ?? [])]) {
    if ((c.volumeMounts ?? []).some((m) => m.name === TOKEN_VOLUME)) problems.push(`container "${c.name}" mounts "${TOKEN_VOLUME}": only the injected sidecar may hold the Airlock token`);
  }
  for (const v of pod.spec.volumes ?? []) {
    if (v.name !== TOKEN_VOLUME && (v.projected?.sources ?? []).some((src) => src.serviceAccountToken?.audience === settings.tokenAudience)) {
      problems.push(`volume "${v.name}" projects a service account token for the audience "${settings.tokenAudience}": only the injected sidecar may hold one`);
    }
  }

  const appPort = readAppPort(pod, annotations, problems);
  const transparent = readBoolean(annotations, TRANSPARENT, settings.transparent, problems);
  if (transparent && runsAsSidecarUid(pod)) {
    problems.push(`transparent mode exempts the sidecar's UID ${SIDECAR_UID} from redirection: no other container may run as it`);
  }
  const resources = readResources(settings.resources, annotations, problems);
  if (appPort === undefined) warnings.push(`no ${APP_PORT} annotation and no container port: inbound calls go to the sidecar's default app port 8080`);

  if (problems.length > 0) throw new InjectionError(InjectionFailure.PodRefused, problems.join('; '));
  return { inject: true, options: { appPort, resources, transparent }, warnings };
}

function readAppPort(pod: Pod, annotations: Readonly<Record<string, string>>, problems: string[]): number | undefined {
  const raw = annotations[APP_PORT];
  let port: number | undefined;
  if (raw !== undefined) {
    port = /^\d{1,5}$/.test(raw) ? Number(raw) : 0;
    if (port < 1 || port > 65535) {
      problems.push(`${APP_PORT}: "${raw}" is not a port (1-65535)`);
      return undefined;
    }
  } else {
    port = pod.spec.containers.find((c) => (c.ports ?? []).length > 0)?.ports?.[0]?.containerPort;
  }
  if (port !== undefined && RESERVED_PORTS.includes(port)) {
    problems.push(`app port ${port} is one of the sidecar's own ports (${RESERVED_PORTS.join(', ')}): set ${APP_PORT}`);
    return undefined;
  }
  return port;
}

function readBoolean(annotations: Readonly<Record<string, string>>, key: string, fallback: boolean, problems: string[]): boolean {
  const raw = annotations[key];
  if (raw === undefined) return fallback;
  if (raw !== 'true' && raw !== 'false') problems.push(`${key}: "${raw}" must be "true" or "false"`);
  return raw === 'true';
}

function readResources(base: Resources, annotations: Readonly<Record<string, string>>, problems: string[]): Resources {
  const out: { requests: Record<string, string>; limits: Record<string, string> } = { requests: { ...base.requests }, limits: { ...base.limits } };
  const fromAnnotation = new Set<string>();
  for (const kind of ['requests', 'limits'] as const) {
    for (const name of ['cpu', 'memory'] as const) {
      const v = annotations[RESOURCE_ANNOTATIONS[kind][name]];
      if (v === undefined) continue;
      out[kind][name] = v;
      fromAnnotation.add(`${kind}.${name}`);
    }
  }
  const where = (kind: 'requests' | 'limits', name: 'cpu' | 'memory'): string =>
    fromAnnotation.has(`${kind}.${name}`) ? RESOURCE_ANNOTATIONS[kind][name] : `the injection settings' resources.${kind}.${name}`;
  problems.push(...resourcesProblems(out, where));
  const resources: Record<string, Record<string, string>> = {};
  if (Object.keys(out.requests).length > 0) resources.requests = out.requests;
  if (Object.keys(out.limits).length > 0) resources.limits = out.limits;
  return resources;
}

function runsAsSidecarUid(pod: Pod): boolean {
  const containers = [...pod.spec.containers, ...(pod.spec.initContainers ?? [])];
  return pod.spec.securityContext?.runAsUser === SIDECAR_UID || containers.some((c) => c.securityContext?.runAsUser === SIDECAR_UID);
}
