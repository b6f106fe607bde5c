import { isIP } from 'node:net';

// Addresses in their one spelling: what the sidecar's destination check and the control plane's
// threat feeds both compare, so a feed entry and a dialled address cannot be read two ways.

export type AddressFamily = 'ipv4' | 'ipv6';

/**
 * The most addresses of one name an external call is judged on and dialled at
 * (AuthorizeRequest.destination_addresses): the sidecar keeps the first of a longer answer.
 */
export const MAX_DESTINATION_ADDRESSES = 64;

/** An IP address in its one spelling: dotted quad, or compressed lower-case IPv6 (an IPv4-mapped one as the IPv4 address it reaches). */
export interface CanonicalAddress {
  readonly address: string;
  readonly family: AddressFamily;
}

const MAPPED_IPV4 = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/;

/**
 * `text` as an IP address in its one spelling, or undefined when it is none (a name). Read as
 * WHATWG URL reads a host, as readAuthority does, so every spelling a client may use is one
 * address here: `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1` are 127.0.0.1, and
 * `::ffff:7f00:1` / `::ffff:127.0.0.1` are 127.0.0.1 too (the kernel reaches the IPv4 address).
 */
export function canonicalAddress(text: string): CanonicalAddress | undefined {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  let hostname: string;
  try {
    hostname = new URL(`http://${bare.includes(':') ? `[${bare}]` : bare}/`).hostname;
  } catch {
    return undefined;
  }
  const v6 = hostname.startsWith('[') ? hostname.slice(1, -1) : undefined;
  if (v6 === undefined) return isIP(hostname) === 4 ? { address: hostname, family: 'ipv4' } : undefined;
  const mapped = MAPPED_IPV4.exec(v6);
  if (mapped !== null) {
    const [hi, lo] = [parseInt(mapped[1] ?? '', 16), parseInt(mapped[2] ?? '', 16)];
    return { address: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, family: 'ipv4' };
  }
  return { address: v6, family: 'ipv6' };
}

/**
 * The IPv4 address an IPv6 one carries to a translator, which reaches it: NAT64's well-known prefix
 * (`64:ff9b::/96`, RFC 6052: the last 32 bits) and 6to4 (`2002::/16`, RFC 3056: bits 16–47). A
 * destination check judges it as well, so `64:ff9b::a9fe:a9fe` is the metadata address it reaches
 * where a NAT64 gateway runs. (Teredo's obfuscated client address and NAT64 network-specific prefixes
 * are not read.)
 */
export function embeddedIpv4(ip: CanonicalAddress): CanonicalAddress | undefined {
  if (ip.family !== 'ipv6') return undefined;
  const g = ipv6Groups(ip.address);
  const nat64 = g[0] === 0x64 && g[1] === 0xff9b && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0;
  const [hi, lo] = nat64 ? [g[6], g[7]] : g[0] === 0x2002 ? [g[1], g[2]] : [undefined, undefined];
  if (hi === undefined || lo === undefined) return undefined;
  return { address: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, family: 'ipv4' };
}

/** The eight 16-bit groups of a canonical (WHATWG-serialized: hex groups, one `::` at most) IPv6 address. */
function ipv6Groups(v6: string): number[] {
  const [head = '', tail] = v6.split('::');
  const part = (s: string): number[] => (s === '' ? [] : s.split(':').map((h) => parseInt(h, 16)));
  const front = part(head);
  const back = tail === undefined ? [] : part(tail);
  return [...front, ...Array<number>(8 - front.length - back.length).fill(0), ...back];
}

/** `a.b.c.d/n` or `x::/n` (any spelling canonicalAddress reads); throws a message for the config error. */
export function parseCidr(text: string): { address: string; family: AddressFamily; prefix: number } {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text.trim());
  const ip = m === null ? undefined : canonicalAddress(m[1] ?? '');
  if (m === null || ip === undefined) throw new Error(`"${text}" is not a CIDR (e.g. 10.0.0.0/8, fd00::/8)`);
  const prefix = Number(m[2]);
  // An IPv4-mapped CIDR (::ffff:10.0.0.0/104) is read as the IPv4 range it covers.
  const mappedPrefix = ip.family === 'ipv4' && (m[1] ?? '').includes(':') ? prefix - 96 : prefix;
  const max = ip.family === 'ipv4' ? 32 : 128;
  if (mappedPrefix < 0 || mappedPrefix > max) throw new Error(`"${text}": the prefix length must be 0..${max}`);
  return { address: ip.address, family: ip.family, prefix: mappedPrefix };
}
