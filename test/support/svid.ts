import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { IdentityServiceClient, type SignCertificateResponse } from '@airlock/proto/identity/v1';
import { CONTROL_PLANE_CHANNEL_OPTIONS } from '../../sidecar/src/controlplane/credentials.ts';
import { newKeyAndCsr } from '../../sidecar/src/identity/key-and-csr.ts';
import type { Mesh } from './mesh.ts';

/** A genuine SVID and its key, as a (compromised) workload holding it would have them. */
export interface HeldSvid {
  readonly identity: string;
  readonly keyPem: string;
  readonly certChainPem: string;
  /** The mesh's trust bundle, to check the servers this workload talks to. */
  readonly ca: string;
}

/**
 * Attests `identity` with a join token and has the control plane sign an SVID for it, exactly as
 * a sidecar does (registering it as an agent at `inboundAddress`); no sidecar is started.
 */
export async function obtainSvid(mesh: Mesh, identity: string, inboundAddress = '127.0.0.1:9'): Promise<HeldSvid> {
  const ca = readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8');
  const { keyPem, csrPem } = await newKeyAndCsr();
  const joinToken = await mesh.createJoinToken(identity);
  const client = new IdentityServiceClient(`127.0.0.1:${mesh.grpcPort}`, credentials.createSsl(Buffer.from(ca), null, null, { checkServerIdentity: () => undefined }), CONTROL_PLANE_CHANNEL_OPTIONS);
  try {
    const svid = await new Promise<SignCertificateResponse>((resolve, reject) =>
      client.signCertificate({ csrPem, joinToken, inboundAddress }, (err, res) => (err === null ? resolve(res) : reject(err))),
    );
    return { identity, keyPem, certChainPem: svid.certChainPem, ca };
  } finally {
    client.close();
  }
}
