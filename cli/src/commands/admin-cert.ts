import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newAdminKeyAndCsr } from '@airlock/control-plane/admin-csr';
import { adminPost } from '../admin-client.ts';
import { UsageError } from '../args.ts';
import { credentialsOf, parseAdminFlags } from '../admin-command.ts';

const HELP = `Usage: airlock admin-cert create --name NAME --role viewer|editor|responder|admin --out DIR
       airlock admin-cert revoke NAME
                                 [--server URL] [--credentials FILE]

revoke: every admin certificate issued to NAME authenticates no one from now on (admin only).

Creates an admin client certificate for the control plane's gRPC AdminService (admin only). The key
is made here and never sent; the control plane signs a CSR for spiffe://<trust domain>/admin/NAME
and records the role. Writes DIR/key.pem and DIR/cert.pem (mode 0600) and DIR/ca.pem (the trust
bundle, to verify the control plane). Valid 30 days.`;

export async function runAdminCert(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv, {
    name: { type: 'string' },
    role: { type: 'string' },
    out: { type: 'string' },
  });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  if (positionals[0] === 'revoke') {
    const name = positionals[1];
    if (name === undefined || positionals.length > 2) throw new UsageError('expected `airlock admin-cert revoke NAME`');
    const r = (await adminPost(credentialsOf(values), '/v1/admin-certs/revoke', { name })) as { name: string; revoked: number };
    console.log(`${r.revoked} admin certificate${r.revoked === 1 ? '' : 's'} of ${r.name} revoked: they authenticate no one from now on`);
    return 0;
  }
  if (positionals[0] !== 'create' || positionals.length > 1) throw new UsageError('expected `airlock admin-cert create --name NAME --role ROLE --out DIR` or `airlock admin-cert revoke NAME`');
  if (typeof values.name !== 'string' || typeof values.role !== 'string' || typeof values.out !== 'string') throw new UsageError('--name, --role and --out are required');
  const creds = credentialsOf(values);
  const { keyPem, csrPem } = newAdminKeyAndCsr();
  const issued = (await adminPost(creds, '/v1/admin-certs', { name: values.name, role: values.role, csrPem })) as { spiffeId: string; role: string; certPem: string; caPem: string; notAfter: string };
  mkdirSync(values.out, { recursive: true, mode: 0o700 });
  for (const [file, text] of [['key.pem', keyPem], ['cert.pem', issued.certPem], ['ca.pem', issued.caPem]] as const) {
    const path = join(values.out, file);
    writeFileSync(path, text, { mode: 0o600 });
    // An existing file keeps its mode through writeFileSync: set it.
    chmodSync(path, 0o600);
  }
  console.log(`admin certificate ${issued.spiffeId} (role ${issued.role}, until ${issued.notAfter}) in ${values.out}`);
  return 0;
}
