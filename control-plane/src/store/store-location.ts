/** Where the state lives, from the `store` setting. */
export type StoreLocation = { readonly kind: 'sqlite'; readonly dir: string | undefined } | { readonly kind: 'etcd'; readonly members: readonly string[] };

/** `sqlite` (in dataDir), `sqlite:DIR`, or `etcd://host:port[,host:port…]`; throws what is wrong. */
export function parseStoreLocation(text: string): StoreLocation {
  if (text === 'sqlite') return { kind: 'sqlite', dir: undefined };
  if (text.startsWith('sqlite:')) {
    const dir = text.slice('sqlite:'.length);
    if (dir === '') throw new Error('sqlite: needs a directory (sqlite:/var/lib/airlock), or say sqlite for dataDir');
    return { kind: 'sqlite', dir };
  }
  if (text.startsWith('etcd://')) {
    const members = text.slice('etcd://'.length).split(',').map((m) => m.trim());
    for (const m of members) {
      const port = /^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(m)?.[1];
      if (port === undefined || Number(port) < 1 || Number(port) > 65535) throw new Error(`"${m}" is not a host:port of an etcd member (etcd://host:2379,host:22379)`);
    }
    return { kind: 'etcd', members };
  }
  throw new Error(`expected sqlite, sqlite:DIR or etcd://host:port[,host:port…], got "${text}"`);
}
