import { status, type ClientReadableStream, type StatusObject } from '@grpc/grpc-js';
import type { Gauge } from 'prom-client';
import { DEFAULT_TLS_MIN_VERSION, type TlsMinVersion } from '@airlock/common/config';
import { canonicalSerial } from '@airlock/common/spiffe';
import { TicketMacKey, type MacKey } from '@airlock/common/ticket';
import type { Logger } from '@airlock/common/logging';
import { IdentityServiceClient, type McpBodyScope, type WatchTrustBundleResponse } from '@airlock/proto/identity/v1';
import type { ControlPlanePool } from '../controlplane/control-plane-pool.ts';
import { CONTROL_PLANE_CHANNEL_OPTIONS, controlPlaneCredentials } from '../controlplane/credentials.ts';
import type { SvidSource } from './svid.ts';

/** Revoked certificates, as last pushed by the control plane. */
export interface RevokedCertificates {
  /**
   * Whether the certificate `issuer` issued with `serial` is revoked: a serial is unique only per
   * issuer. `issuer` as Node prints it (X509Certificate#issuer), `serial` in any hex form.
   */
  has(issuer: string, serial: string): boolean;
  /** Calls `listener` after each update; returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
}

/** What the ingress checks a ticket against, as last pushed by the control plane. */
export interface TicketTrust {
  /** This sidecar's own ticket key with this id (the current or the previous one), if held. */
  ticketKey(keyId: number): MacKey | undefined;
  /** Whether the identity was revoked or is quarantined, as last pushed. */
  isContained(spiffeId: string): boolean;
}

export interface TrustBundleWatcherOptions {
  /** Which control-plane endpoint to watch: the stream moves to another when its own ends it. */
  readonly pool: ControlPlanePool;
  readonly controlPlaneId: string;
  /** Lowest TLS version towards the control plane (setting tlsMinVersion; default TLS 1.3). */
  readonly tlsMinVersion?: TlsMinVersion;
  readonly identity: SvidSource;
  readonly logger: Logger;
  readonly revokedGauge?: Gauge;
  /** The newest ticket key id held. */
  readonly ticketKeyGauge?: Gauge;
  /** Revoked and quarantined identities held. */
  readonly containedGauge?: Gauge;
  /** Called with each message's trust bundle and renewal hint (see IdentityProvider.useTrustBundle). */
  readonly onBundle?: (pushed: { readonly trustBundlePem: string; readonly renewUnlessIssuedByPem: string }) => void;
  /** Called with each message's MCP body scope (undefined: none sent, read every body; mcp/mcp-body-scope.ts). */
  readonly onMcpBody?: (scope: McpBodyScope | undefined) => void;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
}

/** One string per (issuer, serial): a DN holds no NUL. */
function revocationKey(issuer: string, canonical: string): string {
  return `${issuer}\0${canonical}`;
}

/**
 * The stream carries revocations to handshake checks: after a control-plane restart it is back as
 * soon as authorization is (about a second), not after a longer backoff.
 */
export const MAX_REOPEN_DELAY_MS = 1000;

/**
 * Holds WatchTrustBundle open over mTLS with our current SVID, keeps the revoked certificates it pushes
 * and hands the trust bundle on (`onBundle`). A broken stream is reopened with backoff (with whatever SVID we hold then), on
 * another endpoint than the one that ended it (ControlPlanePool); the last list received stays in force meanwhile.
 */
export class TrustBundleWatcher implements RevokedCertificates, TicketTrust {
  readonly #o: TrustBundleWatcherOptions;
  readonly #listeners = new Set<() => void>();
  /** `revocationKey(issuer, serial)` of each revoked certificate ('' issuer: that serial from any). */
  #revoked = new Set<string>();
  /** Revoked and quarantined identities. */
  #contained: ReadonlySet<string> = new Set<string>();
  #ticketKeys: ReadonlyMap<number, TicketMacKey> = new Map<number, TicketMacKey>();
  #client: IdentityServiceClient | undefined;
  #call: ClientReadableStream<WatchTrustBundleResponse> | undefined;
  /** The endpoint whose stream ended last, until the next one is opened (to count a failover). */
  #brokenOn: string | undefined;
  #retry: NodeJS.Timeout | undefined;
  #delay: number;
  #closed = false;
  #unsubscribe: (() => void) | undefined;

  constructor(o: TrustBundleWatcherOptions) {
    this.#o = o;
    this.#delay = o.backoff?.initialMs ?? 200;
  }

  start(): void {
    // The first SVID arrives later: open the stream as soon as there is one to present.
    this.#unsubscribe = this.#o.identity.onChange(() => this.#connect());
    this.#connect();
  }

  has(issuer: string, serial: string): boolean {
    const s = canonicalSerial(serial);
    return this.#revoked.has(revocationKey(issuer, s)) || this.#revoked.has(revocationKey('', s));
  }

  ticketKey(keyId: number): TicketMacKey | undefined {
    return this.#ticketKeys.get(keyId);
  }

  isContained(spiffeId: string): boolean {
    return this.#contained.has(spiffeId);
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): void {
    this.#closed = true;
    this.#unsubscribe?.();
    clearTimeout(this.#retry);
    this.#call?.cancel();
    this.#client?.close();
  }

  #connect(): void {
    if (this.#closed || this.#call !== undefined || this.#retry !== undefined) return;
    const svid = this.#o.identity.current();
    if (svid === undefined) return;
    this.#client?.close();
    const pool = this.#o.pool;
    const [address] = pool.candidates() as [string];
    if (this.#brokenOn !== undefined && address !== this.#brokenOn) pool.failedOver('trust_bundle');
    this.#brokenOn = undefined;
    const client = new IdentityServiceClient(address, controlPlaneCredentials(svid.trustBundlePem, this.#o.controlPlaneId, this.#o.tlsMinVersion ?? DEFAULT_TLS_MIN_VERSION, svid), CONTROL_PLANE_CHANNEL_OPTIONS);
    this.#client = client;
    const call = client.watchTrustBundle({});
    this.#call = call;
    call.on('data', (msg: WatchTrustBundleResponse) => {
      this.#delay = this.#o.backoff?.initialMs ?? 200;
      pool.answered(address);
      this.#update(msg);
    });
    call.on('error', () => undefined); // reported through 'status'
    call.on('status', (s: StatusObject) => {
      if (this.#call !== call) return;
      this.#call = undefined;
      if (this.#closed) return;
      // The stream is meant to stay open: its end (the replica died, is unreachable or shutting
      // down) sends the next attempt to another endpoint.
      pool.noAnswer(address);
      this.#brokenOn = address;
      const level = s.code === status.CANCELLED ? 'debug' : 'warn';
      this.#o.logger[level]({ code: status[s.code], details: s.details, address, retryInMs: this.#delay }, 'trust bundle stream ended; reopening');
      this.#retry = setTimeout(() => {
        this.#retry = undefined;
        this.#connect();
      }, this.#delay);
      this.#delay = Math.min(this.#delay * 2, this.#o.backoff?.maxMs ?? MAX_REOPEN_DELAY_MS);
    });
  }

  #update(msg: WatchTrustBundleResponse): void {
    const next = new Set(msg.revokedCertificates.map((c) => revocationKey(c.issuer, canonicalSerial(c.serial))));
    const added = msg.revokedCertificates.filter((c) => !this.#revoked.has(revocationKey(c.issuer, canonicalSerial(c.serial))));
    this.#revoked = next;
    this.#contained = new Set([...msg.revokedSpiffeIds, ...msg.quarantinedSpiffeIds]);
    // Our own keys only: the control plane sends each sidecar those of the identity it presented.
    this.#ticketKeys = new Map(msg.ticketKeys.filter((k) => k.key.length === 32).map((k) => [k.keyId, new TicketMacKey(Buffer.from(k.key))]));
    this.#o.revokedGauge?.set(next.size);
    this.#o.ticketKeyGauge?.set(Math.max(0, ...this.#ticketKeys.keys()));
    this.#o.containedGauge?.set(this.#contained.size);
    if (added.length > 0) this.#o.logger.warn({ revokedCertificates: added, revokedSpiffeIds: msg.revokedSpiffeIds }, 'revoked certificates received');
    this.#o.onMcpBody?.(msg.mcpBody);
    for (const l of this.#listeners) l();
    if (msg.trustBundlePem !== '') this.#o.onBundle?.({ trustBundlePem: msg.trustBundlePem, renewUnlessIssuedByPem: msg.renewUnlessIssuedByPem });
  }
}
