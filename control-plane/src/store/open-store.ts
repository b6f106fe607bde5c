import { readFileSync } from 'node:fs';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { EtcdStore } from './etcd-store.ts';
import { SqliteStore } from './sqlite-store.ts';
import type { Store } from './store.ts';
import { parseStoreLocation } from './store-location.ts';

export interface StoreSettings {
  readonly store: string;
  readonly dataDir: string;
  readonly etcdCaFile: string | undefined;
  readonly etcdCertFile: string | undefined;
  readonly etcdKeyFile: string | undefined;
  readonly etcdUsername: string | undefined;
  readonly etcdPasswordFile: string | undefined;
}

/** Opens the configured store; etcd is reached (over TLS when etcdCaFile is set) before this returns. */
export async function openStore(s: StoreSettings): Promise<Store> {
  const location = parseStoreLocation(s.store);
  if (location.kind === 'sqlite') return SqliteStore.open(location.dir ?? s.dataDir);
  const read = (what: string, path: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new AirlockError(ErrorCode.Config, `${what}: cannot read ${path}: ${errorMessage(err)}`);
    }
  };
  if ((s.etcdCertFile === undefined) !== (s.etcdKeyFile === undefined)) throw new AirlockError(ErrorCode.Config, 'etcdCertFile and etcdKeyFile go together (a client certificate and its key)');
  if (s.etcdCertFile !== undefined && s.etcdCaFile === undefined) throw new AirlockError(ErrorCode.Config, 'a client certificate for etcd (etcdCertFile) needs etcdCaFile: TLS to etcd is verified');
  if ((s.etcdUsername === undefined) !== (s.etcdPasswordFile === undefined)) throw new AirlockError(ErrorCode.Config, 'etcdUsername and etcdPasswordFile go together');
  const tls = s.etcdCaFile === undefined
    ? undefined
    : {
        caPem: read('etcdCaFile', s.etcdCaFile),
        ...(s.etcdCertFile === undefined || s.etcdKeyFile === undefined ? {} : { certPem: read('etcdCertFile', s.etcdCertFile), keyPem: read('etcdKeyFile', s.etcdKeyFile) }),
      };
  const scheme = tls === undefined ? 'http' : 'https';
  return EtcdStore.open({
    endpoints: location.members.map((m) => `${scheme}://${m}`),
    ...(tls === undefined ? {} : { tls }),
    ...(s.etcdUsername === undefined || s.etcdPasswordFile === undefined ? {} : { auth: { username: s.etcdUsername, password: read('etcdPasswordFile', s.etcdPasswordFile).trim() } }),
  });
}
