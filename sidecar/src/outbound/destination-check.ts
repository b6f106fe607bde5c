import { lookup, Resolver } from 'node:dns/promises';
import { BlockList, connect, type Socket } from 'node:net';
import { canonicalAddress, embeddedIpv4, parseCidr, type CanonicalAddress } from '@airlock/common/addresses';
import { networkInterfaces } from 'node:os';
import { Agent } from 'undici';
import { formatHostPort, parseHostPort } from '@airlock/common/config';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { originateTls, type OriginationTrust } from './tls-origination.ts';
import { DEFAULT_UPSTREAM_TIMEOUTS, undiciTimeouts, type UpstreamTimeouts } from './upstream-timeouts.ts';

/** The rule that forbids an address; named in the 403 body so the agent (and operator) learn which. */
export type AddressRule = 'unspecified' | 'cloud-metadata' | 'sidecar-port' | 'control-plane' | 'loopback' | 'link-local' | 'operator-cidr';

export { canonicalAddress, parseCidr, type CanonicalAddress } from '@airlock/common/addresses';

/** An external destination whose every resolved address was checked: the only ones it may be dialled at. */
export interface CheckedDestination {
  readonly host: string;
  readonly port: number;
  /** Every address of the answer, checked, in the resolver's order; `host` is kept for Host and SNI. */
  readonly addresses: readonly string[];
}

/** A destination refused for where it resolves (or is), not for a policy: a 403 naming the rule. */
export class ForbiddenDestinationError extends AirlockError {
  readonly rule: AddressRule;
  readonly address: string;

  constructor(host: string, port: number, address: string, rule: AddressRule) {
    const where = host === address ? formatHostPort({ host, port }) : `${formatHostPort({ host, port })} (resolved to ${address})`;
    super(ErrorCode.ForbiddenDestination, `${where} is a forbidden destination address (${rule})`);
    this.name = 'ForbiddenDestinationError';
    this.rule = rule;
    this.address = address;
  }
}

function blockList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const { address, family, prefix } = parseCidr(c);
    list.addSubnet(address, prefix, family);
  }
  return list;
}

const UNSPECIFIED = blockList(['0.0.0.0/8', '::/128']);
// AWS/Azure/GCP/Oracle/DigitalOcean IMDS and AWS's IPv6 one, AWS ECS task credentials and EKS Pod
// Identity (link-local, but egressAllowCidrs may re-allow link-local: never these), GCP's IPv6 metadata
// server, Alibaba Cloud's (not link-local at all).
const CLOUD_METADATA = blockList(['169.254.169.254/32', 'fd00:ec2::254/128', '169.254.170.2/32', '169.254.170.23/32', 'fd00:ec2::23/128', 'fd20:ce::254/128', '100.100.100.200/32']);
/** Metadata services by name: refused before any resolution, whatever a resolver answers for them. */
const CLOUD_METADATA_NAMES = new Set(['metadata.google.internal', 'metadata.goog', 'metadata', 'instance-data', 'instance-data.ec2.internal', 'metadata.tencentyun.com']);
const LOOPBACK = blockList(['127.0.0.0/8', '::1/128']);
const LINK_LOCAL = blockList(['169.254.0.0/16', 'fe80::/10']);

/** Resolves a name to all its addresses; tests and the `egressDnsServers` setting replace the system resolver. */
export type ResolveAll = (host: string) => Promise<readonly string[]>;

export interface DestinationCheckOptions {
  /** Operator CIDRs refused on top of the built-in set (`egressForbidCidrs`). */
  readonly forbidCidrs: readonly string[];
  /** Operator CIDRs allowed even where loopback, link-local or forbidCidrs would refuse them (`egressAllowCidrs`); never metadata, unspecified or our own ports. */
  readonly allowCidrs: readonly string[];
  /** The sidecar's own listening ports: refused on every local address. */
  readonly ownPorts: () => readonly number[];
  /** The control plane's endpoints (host:port, resolved): refused as such, and on every local address when local. */
  readonly controlPlane: () => readonly string[];
  readonly resolve?: ResolveAll;
  /** How long one address may take to accept a connection (upstreamConnectTimeout; default 10 s). */
  readonly connectTimeoutMs?: number;
}

/**
 * The one check every external dial goes through (absolute-form forward, CONNECT, captured HTTP
 * and TLS): the sidecar resolves the name itself, refuses the destination if ANY address of the
 * answer is forbidden (a rebinding answer mixing a public and a metadata address is hostile), and
 * connects only to a checked address (connect(), and the external Agent's connector): no
 * second resolution can point elsewhere. An IP literal is checked the same way, without resolution.
 */
export class DestinationCheck {
  readonly #o: DestinationCheckOptions;
  readonly #forbid: BlockList;
  readonly #allow: BlockList;
  readonly #resolve: ResolveAll;
  /** Per name (lower case), the checked answer the latest allowed call to it was judged on: what its HTTP connections dial. */
  readonly #judged = new Map<string, readonly string[]>();

  constructor(o: DestinationCheckOptions) {
    this.#o = o;
    this.#forbid = blockList(o.forbidCidrs);
    this.#allow = blockList(o.allowCidrs);
    this.#resolve = o.resolve ?? systemResolve;
  }

  async check(target: { host: string; port: number }): Promise<CheckedDestination> {
    const literal = canonicalAddress(target.host);
    if (literal === undefined && CLOUD_METADATA_NAMES.has(target.host.toLowerCase().replace(/\.$/, ''))) throw new ForbiddenDestinationError(target.host, target.port, target.host, 'cloud-metadata');
    const addresses = literal !== undefined ? [literal.address] : await this.#lookup(target);
    const checked: string[] = [];
    for (const text of addresses) {
      const ip = canonicalAddress(text);
      if (ip === undefined) throw new AirlockError(ErrorCode.UpstreamUnavailable, `${target.host} resolved to "${text}", not an address`);
      const rule = this.ruleFor(ip, target.port);
      if (rule !== undefined) throw new ForbiddenDestinationError(target.host, target.port, ip.address, rule);
      if (!checked.includes(ip.address)) checked.push(ip.address);
    }
    if (checked.length === 0) throw new AirlockError(ErrorCode.UpstreamUnavailable, `cannot resolve ${target.host}: no address`);
    return { host: target.host, port: target.port, addresses: checked };
  }

  /**
   * A TCP connection to `target` at one of its checked addresses, tried in the resolver's order
   * (as a client falls back from an unreachable IPv6 address to IPv4), and the address used.
   */
  async connect(target: { host: string; port: number }): Promise<{ socket: Socket; address: string }> {
    return this.dial(await this.check(target));
  }

  /**
   * A TCP connection to one of `checked`'s addresses (the answer a decision judged), without
   * resolving again; each address is checked again for `checked.port` (the port may differ from the
   * one asked about: http:// origination goes to 443).
   */
  async dial(checked: CheckedDestination): Promise<{ socket: Socket; address: string }> {
    const { addresses, port } = checked;
    const target = { host: checked.host, port };
    for (const address of addresses) {
      const ip = canonicalAddress(address);
      const rule = ip === undefined ? 'unspecified' : this.ruleFor(ip, port);
      if (rule !== undefined) throw new ForbiddenDestinationError(target.host, port, address, rule);
    }
    let last: Error | undefined;
    for (const address of addresses) {
      try {
        return { socket: await connectTo(address, port, this.#o.connectTimeoutMs ?? DEFAULT_UPSTREAM_TIMEOUTS.connectMs), address };
      } catch (err) {
        last = err instanceof Error ? err : new Error(String(err));
      }
    }
    const where = `${formatHostPort(target)}${addresses.length === 1 && addresses[0] === target.host ? '' : ` at ${addresses.join(', ')}`}`;
    // A destination that never answered is a timeout (504); one that refused is unavailable (502).
    const code = last instanceof ConnectTimeout ? ErrorCode.UpstreamTimeout : ErrorCode.UpstreamUnavailable;
    throw new AirlockError(code, `cannot reach ${where}: ${last?.message ?? 'no address'}`, { cause: last });
  }

  /**
   * Records `checked` as the answer an allowed call to its name was judged on: the external Agent's
   * connections to that name dial it (judgedFor), never a fresh resolution. Bounded: the oldest name is forgotten.
   */
  judged(checked: CheckedDestination): void {
    const name = checked.host.toLowerCase();
    this.#judged.delete(name);
    this.#judged.set(name, checked.addresses);
    if (this.#judged.size > MAX_REMEMBERED_NAMES) this.#judged.delete(this.#judged.keys().next().value ?? '');
  }

  /** The answer the latest allowed call to `target` was judged on (see judged), or a refusal: nothing is dialled unjudged. */
  judgedFor(target: { host: string; port: number }): CheckedDestination {
    const addresses = this.#judged.get(target.host.toLowerCase());
    if (addresses === undefined) throw new AirlockError(ErrorCode.Internal, `no judged address for ${formatHostPort(target)}: not dialled`);
    return { host: target.host, port: target.port, addresses };
  }

  /**
   * The rule forbidding `ip`:`port`, or undefined when it may be dialled. An IPv6 address that
   * carries an IPv4 one to a translator (NAT64, 6to4) is refused when that IPv4 address is.
   */
  ruleFor(ip: CanonicalAddress, port: number): AddressRule | undefined {
    const rule = this.#ruleFor(ip, port);
    if (rule !== undefined) return rule;
    const carried = embeddedIpv4(ip);
    return carried === undefined ? undefined : this.#ruleFor(carried, port);
  }

  #ruleFor(ip: CanonicalAddress, port: number): AddressRule | undefined {
    const { address, family } = ip;
    if (UNSPECIFIED.check(address, family)) return 'unspecified';
    if (CLOUD_METADATA.check(address, family)) return 'cloud-metadata';
    // Which addresses are local is asked only for a port that matters (it reads the interfaces).
    const ownPort = this.#o.ownPorts().includes(port);
    const cpEndpoints = this.#o.controlPlane().filter((e) => e.endsWith(`:${port}`));
    const local = (ownPort || cpEndpoints.length > 0) && isLocal(ip);
    if (ownPort && local) return 'sidecar-port';
    if (isControlPlane(cpEndpoints, ip, port, local)) return 'control-plane';
    if (this.#allow.check(address, family)) return undefined;
    if (LOOPBACK.check(address, family)) return 'loopback';
    if (LINK_LOCAL.check(address, family)) return 'link-local';
    if (this.#forbid.check(address, family)) return 'operator-cidr';
    return undefined;
  }

  async #lookup(target: { host: string; port: number }): Promise<readonly string[]> {
    try {
      return await this.#resolve(target.host);
    } catch (err) {
      throw new AirlockError(ErrorCode.UpstreamUnavailable, `cannot resolve ${target.host}: ${errorMessage(err)}`, { cause: err });
    }
  }
}

/** A control-plane endpoint (host:port, of `port`) that `ip` is, or that is local as `ip` is. */
function isControlPlane(endpoints: readonly string[], ip: CanonicalAddress, port: number, local: boolean): boolean {
  for (const endpoint of endpoints) {
    let named;
    try {
      named = parseHostPort(endpoint);
    } catch {
      continue;
    }
    const cp = named.port === port ? canonicalAddress(named.host) : undefined;
    if (cp !== undefined && (cp.address === ip.address || (local && isLocal(cp)))) return true;
  }
  return false;
}

/** How many names' judged answers are remembered. */
const MAX_REMEMBERED_NAMES = 4096;

/** An address that did not accept the connection within upstreamConnectTimeout. */
class ConnectTimeout extends Error {}

function connectTo(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // As undici's own connector: no Nagle, TCP keep-alive on pooled connections.
    const socket = connect({ host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 });
    const onError = (err: Error): void => reject(err);
    socket.setTimeout(timeoutMs, () => socket.destroy(new ConnectTimeout(`no connection within ${timeoutMs} ms (upstreamConnectTimeout)`)));
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.setTimeout(0);
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

/**
 * The undici Agent for external hosts: its every connection is dialled at the answer the call's
 * decision judged (`destinations.judgedFor`, set by the outbound server before it forwards; a
 * refused destination fails the request with the ForbiddenDestinationError itself), and is logged
 * with the address it reached; response headers and body bytes wait for `timeouts`. An https:// origin (tls: inspect or originate) then gets TLS over
 * that very connection, verified against `trust` (originateTls). The origin keeps the name, so
 * Host and SNI are the name and connections are pooled per name.
 */
export function externalAgent(destinations: DestinationCheck, log: Logger, trust: OriginationTrust = NODE_ROOTS, timeouts: UpstreamTimeouts = DEFAULT_UPSTREAM_TIMEOUTS): Agent {
  return new Agent({
    ...undiciTimeouts(timeouts),
    connect(opts, callback) {
      const host = opts.hostname.startsWith('[') ? opts.hostname.slice(1, -1) : opts.hostname;
      const port = opts.port === '' ? (opts.protocol === 'https:' ? 443 : 80) : Number(opts.port);
      const fail = (err: unknown): void => callback(err instanceof Error ? err : new Error(String(err)), null);
      Promise.resolve()
        .then(() => destinations.dial(destinations.judgedFor({ host, port })))
        .then(({ socket, address }) => {
        log.info({ host, port, address, tls: opts.protocol === 'https:' }, 'external connection opened');
        if (opts.protocol !== 'https:') {
          callback(null, socket);
          return;
        }
        originateTls(socket, host, port, trust, timeouts.connectMs).then((tls) => callback(null, tls), fail);
      }, fail);
    },
  });
}

const NODE_ROOTS: OriginationTrust = { describe: "Node's root certificates" };

/** Loopback, unspecified, or an address of one of this machine's interfaces (read now: they change). */
function isLocal(ip: CanonicalAddress): boolean {
  if (LOOPBACK.check(ip.address, ip.family) || UNSPECIFIED.check(ip.address, ip.family)) return true;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (canonicalAddress(a.address)?.address === ip.address) return true;
    }
  }
  return false;
}

/** The system resolver (getaddrinfo: /etc/hosts, resolv.conf), every address of the answer. */
async function systemResolve(host: string): Promise<readonly string[]> {
  const answers = await lookup(host, { all: true, order: 'verbatim' });
  return answers.map((a) => a.address);
}

/** A resolver asking `servers` (ip or ip:port) directly, A and AAAA, for the `egressDnsServers` setting. */
export function dnsServersResolve(servers: readonly string[]): ResolveAll {
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  resolver.setServers([...servers]);
  return async (host) => {
    const [v4, v6] = await Promise.allSettled([resolver.resolve4(host), resolver.resolve6(host)]);
    const addresses = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    if (addresses.length === 0) throw v4.status === 'rejected' && v4.reason instanceof Error ? v4.reason : new Error('no address');
    return addresses;
  };
}
