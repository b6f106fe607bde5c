import type { InjectionSettings } from './injection-settings.ts';
import { CAPTURE_PORT, INIT_CONTAINER, SIDECAR_UID } from './sidecar-template.ts';

export interface RedirectOptions {
  /** The UID whose traffic is not redirected: the sidecar's own connections leave the pod. */
  readonly sidecarUid: number;
  /**
   * Where outbound TCP goes: the sidecar's capture listener on 127.0.0.1 (captureListen), which
   * judges HTTP by its Host and TLS by its SNI; not the proxy port, which refuses origin-form.
   */
  readonly capturePort: number;
}

/**
 * The transparent-mode rules, as iptables commands (one argument list each):
 * - nat: every new outbound TCP connection of the pod is redirected to 127.0.0.1:<capturePort>,
 *   (the capture listener) except the sidecar's own (by UID) and loopback;
 * - filter: what is not TCP and not loopback (UDP, ICMP …) may not leave, except the sidecar's
 *   traffic, DNS (udp/53, so that names resolve), and replies of connections made to the pod;
 * - IPv6 (when the kernel has it): nothing but loopback, replies and the sidecar leaves.
 * The test of transparent mode applies exactly these rules.
 */
export function redirectRules(o: RedirectOptions): { readonly ipv4: readonly (readonly string[])[]; readonly ipv6: readonly (readonly string[])[] } {
  const uid = String(o.sidecarUid);
  // `-o` in OUTPUT is the interface routed before the nat step: a redirected connection still shows
  // the pod's interface there, so the filter chain knows it by its new destination, loopback.
  const egress = (loopback: string, drop: readonly string[]): (readonly string[])[] => [
    ['-t', 'filter', '-N', 'AIRLOCK_EGRESS'],
    ['-t', 'filter', '-A', 'AIRLOCK_EGRESS', '-o', 'lo', '-j', 'RETURN'],
    ['-t', 'filter', '-A', 'AIRLOCK_EGRESS', '-d', loopback, '-j', 'RETURN'],
    ['-t', 'filter', '-A', 'AIRLOCK_EGRESS', '-m', 'owner', '--uid-owner', uid, '-j', 'RETURN'],
    ['-t', 'filter', '-A', 'AIRLOCK_EGRESS', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'RETURN'],
    ...(drop.length === 0 ? [] : [drop]),
    ['-t', 'filter', '-A', 'AIRLOCK_EGRESS', '-j', 'REJECT'],
    ['-t', 'filter', '-A', 'OUTPUT', '-j', 'AIRLOCK_EGRESS'],
  ];
  return {
    ipv4: [
      ['-t', 'nat', '-N', 'AIRLOCK_OUTPUT'],
      ['-t', 'nat', '-A', 'AIRLOCK_OUTPUT', '-o', 'lo', '-j', 'RETURN'],
      ['-t', 'nat', '-A', 'AIRLOCK_OUTPUT', '-m', 'owner', '--uid-owner', uid, '-j', 'RETURN'],
      ['-t', 'nat', '-A', 'AIRLOCK_OUTPUT', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(o.capturePort)],
      ['-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-j', 'AIRLOCK_OUTPUT'],
      ...egress('127.0.0.0/8', ['-t', 'filter', '-A', 'AIRLOCK_EGRESS', '-p', 'udp', '--dport', '53', '-j', 'RETURN']),
    ],
    ipv6: egress('::1/128', []),
  };
}

/** The rules as a POSIX sh script (what the init container runs): stops at the first failing rule. */
export function redirectScript(o: RedirectOptions): string {
  const rules = redirectRules(o);
  const line = (cmd: string, args: readonly string[]): string => [cmd, ...args].join(' ');
  return [
    'set -eu',
    ...rules.ipv4.map((r) => line('iptables', r)),
    'if [ -e /proc/net/if_inet6 ]; then',
    ...rules.ipv6.map((r) => `  ${line('ip6tables', r)}`),
    'fi',
  ].join('\n');
}

/**
 * The init container of transparent mode: runs before the sidecar, as root with NET_ADMIN and
 * NET_RAW only (what iptables needs), and exits. Its image needs sh and iptables (the Airlock image has both).
 */
export function redirectInitContainer(settings: InjectionSettings): Record<string, unknown> {
  return {
    name: INIT_CONTAINER,
    image: settings.proxyInitImage,
    imagePullPolicy: settings.imagePullPolicy,
    command: ['/bin/sh', '-c'],
    args: [redirectScript({ sidecarUid: SIDECAR_UID, capturePort: CAPTURE_PORT })],
    resources: settings.resources,
    securityContext: {
      runAsNonRoot: false,
      runAsUser: 0,
      runAsGroup: 0,
      allowPrivilegeEscalation: false,
      privileged: false,
      // iptables writes its lock file under /run.
      readOnlyRootFilesystem: false,
      capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
  };
}
