import { canonicalAddress, type AddressFamily, type CanonicalAddress } from '@airlock/common/addresses';
import type { ThreatEntry } from './entries.ts';

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
  /** Per family: prefix length (longest first) → network (masked address as a bigint) → match. */
  readonly #networks: Record<AddressFamily, { prefix: number; nets: Map<bigint, ThreatMatch> }[]> = { ipv4: [], ipv6: [] };
  readonly size: number;

  constructor(feeds: readonly LoadedFeed[]) {
    let size = 0;
    const byPrefix: Record<AddressFamily, Map<number, Map<bigint, ThreatMatch>>> = { ipv4: new Map(), ipv6: new Map() };
    for (const feed of feeds) {
      for (const e of feed.entries) {
        const match = { feed: feed.name, version: feed.version, entry: e.text };
        if (e.kind === 'domain') {
          if (!this.#domains.has(e.domain)) this.#domains.set(e.domain, match);
        } else {
          const nets = byPrefix[e.family].get(e.prefix) ?? new Map<bigint, ThreatMatch>();
          byPrefix[e.family].set(e.prefix, nets);
          const net = masked(toBigInt(e), e.family, e.prefix);
          if (!nets.has(net)) nets.set(net, match);
        }
        size++;
      }
    }
    for (const family of ['ipv4', 'ipv6'] as const) {
      this.#networks[family] = [...byPrefix[family]].sort((a, b) => b[0] - a[0]).map(([prefix, nets]) => ({ prefix, nets }));
    }
    this.size = size;
  }

  /** The entry `host` (a name, or an IP in any spelling) matches, if any. */
  match(host: string): ThreatMatch | undefined {
    const ip = canonicalAddress(host);
    return ip !== undefined ? this.matchAddress(ip) : this.matchDomain(host);
  }

  matchAddress(ip: CanonicalAddress): ThreatMatch | undefined {
    const lists = this.#networks[ip.family];
    if (lists.length === 0) return undefined;
    const value = toBigInt(ip);
    for (const { prefix, nets } of lists) {
      const hit = nets.get(masked(value, ip.family, prefix));
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

function masked(value: bigint, family: AddressFamily, prefix: number): bigint {
  const bits = family === 'ipv4' ? 32 : 128;
  const hostBits = BigInt(bits - prefix);
  return (value >> hostBits) << hostBits;
}

/** A canonical address (dotted quad, or compressed hex IPv6 as WHATWG URL writes it) as a number. */
function toBigInt(ip: { readonly address: string; readonly family: AddressFamily }): bigint {
  if (ip.family === 'ipv4') return ip.address.split('.').reduce((n, part) => (n << 8n) | BigInt(Number(part)), 0n);
  const [head = '', tail] = ip.address.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g, 16)), 0n);
}
