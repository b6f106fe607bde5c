import { UsageError } from '../args.ts';
import { credentialsOf, formatTable, outputOf, parseAdminFlags, print } from '../admin-command.ts';
import { adminGet, adminPost } from '../admin-client.ts';

const HELP = `Usage: airlock ca status|prepare|activate|retire [flags] [-o table|json|yaml] [--server URL] [--credentials FILE]

Rolls the trust domain to a new root with no failed call:

  status                 the roots, their state, and the unexpired SVIDs each issued (viewer)
  prepare                create a new root and add it to the trust bundle pushed to every sidecar;
                         it does not issue yet (admin)
  activate [--renew-now] the prepared root issues from now on; sidecars pick it up at their next
                         renewal, or at once (within ~2 s) with --renew-now (admin)
  retire [--root ID] [--force]
                         remove the previous root(s) from the bundle; refused while an SVID they
                         issued is unexpired, unless --force (its holder is then refused by peers) (admin)

Between prepare and activate, let the bundle reach the sidecars (airlock_sidecar_trust_bundle_certificates),
and give new sidecars <dataDir>/trust-bundle.pem as --ca-file.`;

interface RootStatus {
  id: string;
  state: string;
  subject: string;
  notAfter: string;
  unexpiredSvids: number;
  lastSvidExpiry?: string;
}

interface CaStatus {
  mode: string;
  issuer: string;
  renewNow: boolean;
  roots: RootStatus[];
}

function table(status: CaStatus): string {
  const rows = status.roots.map((r) => [r.id.slice(0, 16), r.state, r.notAfter, String(r.unexpiredSvids), r.lastSvidExpiry ?? '-']);
  return `mode: ${status.mode}${status.renewNow ? ' (sidecars asked to renew now)' : ''}\n${formatTable(['ROOT', 'STATE', 'NOT AFTER', 'UNEXPIRED SVIDS', 'LAST SVID EXPIRY'], rows)}`;
}

export async function runCa(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv, {
    'renew-now': { type: 'boolean' },
    root: { type: 'string' },
    force: { type: 'boolean' },
  });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const [verb, ...extra] = positionals;
  if (verb === undefined || !['status', 'prepare', 'activate', 'retire'].includes(verb) || extra.length > 0) {
    throw new UsageError('expected `airlock ca status|prepare|activate|retire`');
  }
  if (values['renew-now'] !== undefined && verb !== 'activate') throw new UsageError('--renew-now goes with `activate`');
  if ((values.root !== undefined || values.force !== undefined) && verb !== 'retire') throw new UsageError('--root and --force go with `retire`');
  const output = outputOf(values.output);
  const creds = credentialsOf(values);
  if (verb === 'status') {
    const status = (await adminGet(creds, '/v1/ca')) as CaStatus;
    print(output, status, () => table(status));
    return 0;
  }
  const body =
    verb === 'activate' ? { renewNow: values['renew-now'] === true }
    : verb === 'retire' ? { ...(typeof values.root === 'string' ? { id: values.root } : {}), force: values.force === true }
    : {};
  const result = (await adminPost(creds, `/v1/ca/${verb}`, body)) as { roots: RootStatus[]; status: CaStatus };
  print(output, result, () => {
    const ids = result.roots.map((r) => r.id.slice(0, 16)).join(', ');
    const what = { prepare: 'prepared (in the bundle, not issuing)', activate: 'active (issuing)', retire: 'retired (removed from the bundle)' }[verb as 'prepare' | 'activate' | 'retire'];
    return `root ${ids} ${what}\n${table(result.status)}`;
  });
  return 0;
}
