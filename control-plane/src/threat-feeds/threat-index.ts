import { setImmediate } from 'node:timers/promises';
import { canonicalAddress, embeddedIpv4, type AddressFamily, type CanonicalAddress } from '@airlock/common/addresses';
import { ENDS_IN_A_NUMBER, SLICE, type ThreatEntry } from './entries.ts';

/** An IPv4 address already in its one spelling (what the sidecar sends): no need to parse it. */
const DOTTED_QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** What a destination matched: the feed, the version of it that was loaded, and the entry as the feed wrote it. */
export interface ThreatMatch {
  readonly feed: string;
  readonly version: string;
  readonly entry: string;
}

/** One loaded feed, as the index takes it. */
export interface LoadedFeed {
  readonly name: string;
  readonly version: string;
  readonly entries: readonly ThreatEntry[];
}

/**
 * Every loaded feed's entries, for one lookup per decision: domains in a hash set walked label by
 * label (`a.b.evil.example` → `b.evil.example` → `evil.example` …), addresses in one hash set per
 * prefix length, each asked with the address masked to it (at most 33 or 129 probes, in practice
 * the few lengths the feeds use). Immutable: a reload builds a new one. The first feed listing an
 * entry is the one named.
 */
export class ThreatIndex {
  static readonly EMPTY = new ThreatIndex([]);

  readonly #domains = new Map<string, ThreatMatch>();
  /** Per family: prefix length (longest first) → network (networkKey) → match. */
  readonly #networks: Record<AddressFamily, { prefix: number; nets: Map<number | string, ThreatMatch> }[]> = { ipv4: [], ipv6: [] };
  #size = 0;

  constructor(feeds: readonly LoadedFeed[]) {
    for (const slices = this.#fill(feeds); slices.next().done !== true; );
  }

  /** As the constructor, yielding to the event loop every SLICE entries: a large feed does not stall decisions. */
  static async build(feeds: readonly LoadedFeed[]): Promise<ThreatIndex> {
    const index = new ThreatIndex([]);
    for (const slices = index.#fill(feeds); slices.next().done !== true; ) await setImmediate();
    return index;
  }

  get size(): number {
    return this.#size;
  }

  /** Whether some feed lists an address or range (then a name is judged by its resolved addresses too). */
  get hasAddresses(): boolean {
    return this.#networks.ipv4.length > 0 || this.#networks.ipv6.length > 0;
  }

  *#fill(feeds: readonly LoadedFeed[]): Generator<void> {
    const byPrefix: Record<AddressFamily, Map<number, Map<number | string, ThreatMatch>>> = { ipv4: new Map(), ipv6: new Map() };
    let size = 0;
    for (const feed of feeds) {
      for (const e of feed.entries) {
        const match = { feed: feed.name, version: feed.version, entry: e.text };
        if (e.kind === 'domain') {
          if (!this.#domains.has(e.domain)) this.#domains.set(e.domain, match);
        } else {
          const nets = byPrefix[e.family].get(e.prefix) ?? new Map<number | string, ThreatMatch>();
          byPrefix[e.family].set(e.prefix, nets);
          const net = networkKey(bitsOf(e), e.prefix);
          if (!nets.has(net)) nets.set(net, match);
        }
        if (++size % SLICE === 0) yield;
      }
    }
    for (const family of ['ipv4', 'ipv6'] as const) {
      this.#networks[family] = [...byPrefix[family]].sort((a, b) => b[0] - a[0]).map(([prefix, nets]) => ({ prefix, nets }));
    }
    this.#size = size;
  }

  /** The entry `host` (a name, or an IP in any spelling) matches, if any. */
  match(host: string): ThreatMatch | undefined {
    // WHATWG URL reads a host as IPv4 only when its last label is a number (`1`, `0x7f`, `017`), as
    // IPv6 only with `:`: any other host is a name, without the cost of parsing it as an address.
    if (DOTTED_QUAD.test(host)) return this.matchAddress({ address: host, family: 'ipv4' });
    const ip = host.includes(':') || ENDS_IN_A_NUMBER.test(host) ? canonicalAddress(host) : undefined;
    return ip !== undefined ? this.matchAddress(ip) : this.matchDomain(host);
  }

  /** The entry `ip` matches, or the IPv4 address it carries to a NAT64 or 6to4 translator (which reaches it). */
  matchAddress(ip: CanonicalAddress): ThreatMatch | undefined {
    const hit = this.#matchNetworks(ip);
    if (hit !== undefined) return hit;
    const carried = embeddedIpv4(ip);
    return carried === undefined ? undefined : this.#matchNetworks(carried);
  }

  #matchNetworks(ip: CanonicalAddress): ThreatMatch | undefined {
    const lists = this.#networks[ip.family];
    if (lists.length === 0) return undefined;
    const bits = bitsOf(ip);
    for (const { prefix, nets } of lists) {
      const hit = nets.get(networkKey(bits, prefix));
      if (hit !== undefined) return hit;
    }
    return undefined;
  }

  matchDomain(host: string): ThreatMatch | undefined {
    if (this.#domains.size === 0) return undefined;
    // Names are matched as sent (lower case, no trailing dot): the sidecar sends an IDN as its A-label form.
    let name = host.toLowerCase();
    if (name.endsWith('.')) name = name.slice(0, -1);
    for (;;) {
      const hit = this.#domains.get(name);
      if (hit !== undefined) return hit;
      const dot = name.indexOf('.');
      if (dot === -1) return undefined;
      name = name.slice(dot + 1);
    }
  }
}

/**
 * The first `prefix` bits of an address, as a Map key: a number for IPv4, a hex string for IPv6
 * (no bigint: V8 hashes bigint Map keys badly, and its arithmetic allocates).
 */
function networkKey(bits: Bits, prefix: number): number | string {
  if (typeof bits === 'number') return prefix === 0 ? 0 : bits >>> (32 - prefix);
  const whole = prefix >> 2;
  const rest = prefix & 3;
  if (rest === 0) return bits.slice(0, whole);
  const nibble = parseInt(bits[whole] ?? '0', 16) >> (4 - rest);
  return `${bits.slice(0, whole)}/${nibble}`;
}

/** An IPv4 address as an unsigned 32-bit number, an IPv6 one as its 32 hex digits. */
type Bits = number | string;

/** A canonical address (dotted quad, or compressed hex IPv6 as WHATWG URL writes it) as Bits. */
function bitsOf(ip: { readonly address: string; readonly family: AddressFamily }): Bits {
  if (ip.family === 'ipv4') {
    const p = ip.address.split('.');
    return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
  }
  const [head = '', tail] = ip.address.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.map((g) => g.padStart(4, '0')).join('');
}
