import type { PatchOperation } from './admission-review.ts';
import { INJECTED, type PodOptions } from './should-inject.ts';
import type { InjectionSettings } from './injection-settings.ts';
import type { Container, Pod } from './pod.ts';
import { redirectInitContainer } from './redirect-rules.ts';
import { EGRESS_CA_DIR, EGRESS_CA_ENV, EGRESS_CA_VOLUME, egressCaVolume, PROXY_ENV, sidecarContainer, tokenVolume } from './sidecar-template.ts';

/** JSON Pointer escaping (RFC 6901) of one path segment. */
function pointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/**
 * The JSON Patch that injects a pod, applied in order: proxy env on the pod's own containers (at
 * their current indexes), then the sidecar and the redirect init container first among the init
 * containers (so that the pod's own init containers already go through a ready sidecar), the token
 * volume, and the marker annotation. Returns warnings for the API server to show (replaced env).
 */
export function injectionPatch(pod: Pod, settings: InjectionSettings, options: PodOptions, trustBundlePem: string): { patch: PatchOperation[]; warnings: string[] } {
  const patch: PatchOperation[] = [];
  const warnings: string[] = [];
  const userInit = pod.spec.initContainers ?? [];
  pod.spec.containers.forEach((c, i) => patch.push(...proxyEnvPatch(c, `/spec/containers/${i}`, warnings), ...egressCaPatch(c, `/spec/containers/${i}`, warnings)));
  userInit.forEach((c, i) => patch.push(...proxyEnvPatch(c, `/spec/initContainers/${i}`, warnings), ...egressCaPatch(c, `/spec/initContainers/${i}`, warnings)));

  const ours = [...(options.transparent ? [redirectInitContainer(settings)] : []), sidecarContainer(settings, options, trustBundlePem)];
  if (pod.spec.initContainers === undefined) patch.push({ op: 'add', path: '/spec/initContainers', value: ours });
  // Each insert at 0 lands before the previous one: insert in reverse order.
  else for (const c of [...ours].reverse()) patch.push({ op: 'add', path: '/spec/initContainers/0', value: c });

  if (pod.spec.volumes === undefined) patch.push({ op: 'add', path: '/spec/volumes', value: [tokenVolume(settings), egressCaVolume()] });
  else patch.push({ op: 'add', path: '/spec/volumes/-', value: tokenVolume(settings) }, { op: 'add', path: '/spec/volumes/-', value: egressCaVolume() });

  if (pod.metadata?.annotations === undefined) {
    if (pod.metadata === undefined) patch.push({ op: 'add', path: '/metadata', value: {} });
    patch.push({ op: 'add', path: '/metadata/annotations', value: { [INJECTED]: 'true' } });
  } else {
    patch.push({ op: 'add', path: `/metadata/annotations/${pointer(INJECTED)}`, value: 'true' });
  }
  return { patch, warnings };
}

/**
 * Sets the proxy variables on one container. A variable it already defines is replaced (Kubernetes
 * keeps the last of duplicate names, and an app's own HTTP_PROXY would route around the sidecar).
 */
function proxyEnvPatch(c: Container, path: string, warnings: string[]): PatchOperation[] {
  if (c.env === undefined) return [{ op: 'add', path: `${path}/env`, value: PROXY_ENV }];
  const ops: PatchOperation[] = [];
  for (const v of PROXY_ENV) {
    const indexes = c.env.flatMap((e, j) => (e.name === v.name ? [j] : []));
    if (indexes.length === 0) {
      ops.push({ op: 'add', path: `${path}/env/-`, value: v });
      continue;
    }
    for (const j of indexes) ops.push({ op: 'replace', path: `${path}/env/${j}`, value: v });
    if (c.env[indexes[0] ?? 0]?.value !== v.value) warnings.push(`container ${c.name}: ${v.name} set to the airlock sidecar`);
  }
  return ops;
}

/**
 * Mounts the sidecar's egress CA files read-only and points the TLS clients' variables at them
 * (EGRESS_CA_ENV). A variable the container already sets is kept, with a warning: its own roots
 * are its business, but it will not trust hosts the sidecar inspects.
 */
function egressCaPatch(c: Container, path: string, warnings: string[]): PatchOperation[] {
  const mount = { name: EGRESS_CA_VOLUME, mountPath: EGRESS_CA_DIR, readOnly: true };
  const ops: PatchOperation[] = [c.volumeMounts === undefined ? { op: 'add', path: `${path}/volumeMounts`, value: [mount] } : { op: 'add', path: `${path}/volumeMounts/-`, value: mount }];
  // After proxyEnvPatch: the env list exists by now.
  for (const v of EGRESS_CA_ENV) {
    if ((c.env ?? []).some((e) => e.name === v.name)) warnings.push(`container ${c.name}: ${v.name} is kept as set; it will not trust hosts the sidecar inspects (tls: inspect)`);
    else ops.push({ op: 'add', path: `${path}/env/-`, value: v });
  }
  return ops;
}
