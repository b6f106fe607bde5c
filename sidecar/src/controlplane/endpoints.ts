import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { formatHostPort, type ListenAddress } from '@airlock/common/config';
import { errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';

/** The addresses a host name resolves to (IPv4 or IPv6 literals). */
export type ResolveHost = (host: string) => Promise<readonly string[]>;

/** The system resolver (getaddrinfo: /etc/hosts, then DNS), every address of the name. */
export const resolveWithSystem: ResolveHost = async (host) => (await lookup(host, { all: true })).map((a) => a.address);

/**
 * A sidecar talks to at most this many control-plane addresses: it bounds the per-endpoint health
 * gauge's labels and the channels one sidecar may hold, whatever a DNS answer holds.
 */
export const MAX_CONTROL_PLANE_ENDPOINTS = 16;

/**
 * What each configured host:port is dialled as: an IP literal as it is, a name as every address it
 * resolves to (a Kubernetes headless Service: one per replica). A name that does not resolve keeps
 * what it resolved to last, or else stays a name (grpc-js then resolves it when it connects), so the
 * list is never empty. Sorted and deduplicated (a stable index per address), at most
 * MAX_CONTROL_PLANE_ENDPOINTS.
 */
export async function resolveEndpoints(
  configured: readonly ListenAddress[],
  resolve: ResolveHost,
  previous: ReadonlyMap<string, readonly string[]> = new Map(),
): Promise<{ readonly addresses: readonly string[]; readonly byName: ReadonlyMap<string, readonly string[]>; readonly failures: readonly { readonly name: string; readonly reason: string }[] }> {
  const byName = new Map<string, readonly string[]>();
  const failures: { name: string; reason: string }[] = [];
  const all = await Promise.all(
    configured.map(async (a): Promise<readonly string[]> => {
      if (isIP(a.host) !== 0) return [formatHostPort(a)];
      const name = formatHostPort(a);
      try {
        const ips = await resolve(a.host);
        if (ips.length === 0) throw new Error('no address');
        const resolved = ips.map((host) => formatHostPort({ host, port: a.port }));
        byName.set(name, resolved);
        return resolved;
      } catch (err) {
        failures.push({ name, reason: errorMessage(err) });
        const last = previous.get(name) ?? [name];
        byName.set(name, last);
        return last;
      }
    }),
  );
  const addresses = [...new Set(all.flat())].sort().slice(0, MAX_CONTROL_PLANE_ENDPOINTS);
  return { addresses, byName, failures };
}

export interface ControlPlaneEndpointsOptions {
  /** The `controlPlane` setting: host:port, one or several, names or IPs. */
  readonly configured: readonly ListenAddress[];
  /** How often names are resolved again (replicas come and go behind a headless Service). */
  readonly refreshMs: number;
  readonly logger: Logger;
  /** Tests inject one; never a real DNS query off the machine in a test. */
  readonly resolve?: ResolveHost;
}

/**
 * The control-plane addresses a sidecar may dial, from the `controlPlane` setting, kept current by
 * resolving its names again every `refreshMs`. Listeners hear of every change.
 */
export class ControlPlaneEndpoints {
  readonly #o: ControlPlaneEndpointsOptions;
  readonly #listeners = new Set<(addresses: readonly string[]) => void>();
  #addresses: readonly string[];
  #byName: ReadonlyMap<string, readonly string[]> = new Map();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(o: ControlPlaneEndpointsOptions) {
    this.#o = o;
    // Before the first resolution: what was configured, names as names.
    this.#addresses = [...new Set(o.configured.map(formatHostPort))].sort().slice(0, MAX_CONTROL_PLANE_ENDPOINTS);
  }

  current(): readonly string[] {
    return this.#addresses;
  }

  onChange(listener: (addresses: readonly string[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves now, then every refreshMs until close(). */
  async start(): Promise<void> {
    await this.refresh();
    if (this.#closed || !this.#o.configured.some((a) => isIP(a.host) === 0)) return;
    this.#timer = setInterval(() => void this.refresh(), this.#o.refreshMs);
    this.#timer.unref();
  }

  async refresh(): Promise<void> {
    const { addresses, byName, failures } = await resolveEndpoints(this.#o.configured, this.#o.resolve ?? resolveWithSystem, this.#byName);
    if (this.#closed) return;
    this.#byName = byName;
    for (const f of failures) this.#o.logger.warn({ name: f.name, reason: f.reason, using: byName.get(f.name) }, 'cannot resolve a control-plane name; keeping the addresses it had');
    if (addresses.length === this.#addresses.length && addresses.every((a, i) => a === this.#addresses[i])) return;
    this.#addresses = addresses;
    // Index → address once here, so the per-endpoint metrics can be read by index.
    this.#o.logger.info({ endpoints: Object.fromEntries(addresses.map((a, i) => [i, a])) }, 'control-plane endpoints');
    for (const l of this.#listeners) l(addresses);
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#listeners.clear();
  }
}
