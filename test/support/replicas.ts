import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRootLogger } from '@airlock/common/logging';
import { controlPlaneConfig } from '../../control-plane/src/config/config.ts';
import { startControlPlane, type RunningControlPlane } from '../../control-plane/src/main.ts';
import type { EtcdCluster } from './etcd.ts';
import { createOperatorPki } from './operator-ca.ts';

/** The replica tests' policy: the namespace demo may call api.example.com:443, nothing else. */
export const DEMO_TO_API_POLICY = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: demo }
spec: { selector: { namespace: demo } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: demo-out }
spec:
  from: { segments: [demo] }
  to: { hosts: [api.example.com], ports: [443] }
  action: allow
`;

/** One CA for every replica (the operator's intermediate, as the Helm chart gives them): its files in `dir`; the root PEM. */
export function writeSharedCa(dir: string): string {
  const pki = createOperatorPki();
  writeFileSync(join(dir, 'tls.crt'), pki.intermediate.certPem);
  writeFileSync(join(dir, 'tls.key'), pki.intermediate.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'ca.crt'), pki.root.certPem);
  return pki.root.certPem;
}

/**
 * A control-plane replica in this process on `etcd`, with a data dir of its own (empty: everything it
 * knows comes from etcd and the CA), on loopback ports. The CA: the operator files `writeSharedCa(dir)`
 * wrote, or with `kekFile` the self-made ring sealed in etcd with that key-encryption key.
 */
export function startReplica(o: { etcd: EtcdCluster; dir: string; trustDomain: string; policyFile?: string; name?: string; kekFile?: string; flags?: Record<string, string> }): Promise<RunningControlPlane> {
  const config = controlPlaneConfig.load({
    flags: {
      trustDomain: o.trustDomain,
      // A data dir that does not exist yet: the control plane makes it.
      dataDir: join(mkdtempSync(join(o.dir, 'replica-')), 'data'),
      store: `etcd://${o.etcd.endpoints.map((e) => e.replace(/^https?:\/\//, '')).join(',')}`,
      grpcListen: '127.0.0.1:0',
      httpListen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      ...(o.kekFile === undefined
        ? { caCertFile: join(o.dir, 'tls.crt'), caKeyFile: join(o.dir, 'tls.key'), caBundleFile: join(o.dir, 'ca.crt') }
        : { caKeyEncryptionKeyFile: o.kekFile }),
      ...(o.policyFile === undefined ? {} : { policyFile: o.policyFile }),
      ...o.flags,
    },
  });
  // Decisions' audit lines are written at any level: a destination that drops them keeps output readable.
  return startControlPlane(config, { logger: createRootLogger({ process: o.name ?? 'control-plane', level: 'silent', destination: { write: () => undefined } }) });
}
