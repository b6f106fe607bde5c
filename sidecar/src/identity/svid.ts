/** The X.509-SVID this sidecar currently holds. `keyPem` never leaves the process. */
export interface Svid {
  readonly spiffeId: string;
  /** Leaf first, then intermediates. */
  readonly certChainPem: string;
  readonly keyPem: string;
  /** Every root to trust for peers and for the control plane. */
  readonly trustBundlePem: string;
  readonly expiresAt: Date;
}

/** What the proxies need from identity: the current SVID, and word when it changes. */
export interface SvidSource {
  current(): Svid | undefined;
  /** Calls `listener` with each new SVID; returns an unsubscribe function. */
  onChange(listener: (svid: Svid) => void): () => void;
}
