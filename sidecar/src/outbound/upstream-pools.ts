import { createSecureContext, type SecureContext } from 'node:tls';
import { buildConnector, Pool } from 'undici';
import { DEFAULT_TLS_MIN_VERSION, type TlsMinVersion } from '@airlock/common/config';
import type { Upstream } from '../authz/authorizer.ts';
import type { Svid } from '../identity/svid.ts';
import { expectSpiffeId } from '../tls/peer-identity.ts';
import { markHandshakeRefusals } from './peer-handshake.ts';
import { DEFAULT_UPSTREAM_TIMEOUTS, undiciTimeouts, type UpstreamTimeouts } from './upstream-timeouts.ts';

/**
 * Kept-alive mTLS connection pools to peer sidecars, one per (address, expected SPIFFE ID): a pool
 * only ever talks to the identity it was built for. Built from one SVID; when the SVID changes the
 * pools are replaced and the old ones drain (in-flight requests finish). Every connection of that
 * SVID shares one TLS context: given the PEMs instead, each connection would parse them into a context
 * of its own (CPU per handshake, and native memory that V8 does not see, so it is freed late).
 * Bounded: a pool whose last connection closed with nothing queued is dropped (peers come and go with
 * their pods), and past `maxPools` the oldest is closed (it finishes what it has in flight).
 */
/** Distinct (peer address, identity) pools kept at most; a sidecar calls far fewer peers. */
export const DEFAULT_MAX_UPSTREAM_POOLS = 1024;

export class UpstreamPools {
  readonly #pools = new Map<string, Pool>();
  readonly #minVersion: TlsMinVersion;
  readonly #maxPools: number;
  readonly #timeouts: UpstreamTimeouts;
  #svid: Svid | undefined;
  #context: SecureContext | undefined;

  /** `minVersion`: the lowest TLS version offered to peers (setting tlsMinVersion); `timeouts`: the upstream* settings. */
  constructor(minVersion: TlsMinVersion = DEFAULT_TLS_MIN_VERSION, maxPools = DEFAULT_MAX_UPSTREAM_POOLS, timeouts: UpstreamTimeouts = DEFAULT_UPSTREAM_TIMEOUTS) {
    this.#minVersion = minVersion;
    this.#maxPools = maxPools;
    this.#timeouts = timeouts;
  }

  /** How many pools are kept now. */
  get size(): number {
    return this.#pools.size;
  }

  get(upstream: Upstream, svid: Svid): Pool {
    if (svid !== this.#svid) this.#drain(svid);
    this.#context ??= createSecureContext({ ca: svid.trustBundlePem, cert: svid.certChainPem, key: svid.keyPem, minVersion: this.#minVersion });
    const key = `${upstream.address}\n${upstream.spiffeId}`;
    let pool = this.#pools.get(key);
    if (pool === undefined) {
      pool = new Pool(`https://${upstream.address}`, {
        ...undiciTimeouts(this.#timeouts),
        connect: markHandshakeRefusals(
          buildConnector({
            // TCP and the mTLS handshake together.
            timeout: this.#timeouts.connectMs,
            secureContext: this.#context,
            rejectUnauthorized: true,
            // Verified by SPIFFE ID, not host name: the address is often a bare IP.
            checkServerIdentity: expectSpiffeId(upstream.spiffeId),
          }),
        ),
      });
      this.#forgetWhenUnused(key, pool);
      this.#pools.set(key, pool);
      if (this.#pools.size > this.#maxPools) this.#evictOldest();
    }
    return pool;
  }

  async close(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.destroy()));
  }

  #forgetWhenUnused(key: string, pool: Pool): void {
    pool.on('disconnect', () => {
      const { connected, pending, running } = pool.stats;
      if (connected > 0 || pending > 0 || running > 0 || this.#pools.get(key) !== pool) return;
      this.#pools.delete(key);
      void pool.close().catch(() => undefined);
    });
  }

  #evictOldest(): void {
    const [key, pool] = this.#pools.entries().next().value ?? [];
    if (key === undefined || pool === undefined) return;
    this.#pools.delete(key);
    void pool.close().catch(() => undefined);
  }

  #drain(svid: Svid): void {
    for (const pool of this.#pools.values()) void pool.close().catch(() => undefined);
    this.#pools.clear();
    this.#svid = svid;
    this.#context = undefined;
  }
}
