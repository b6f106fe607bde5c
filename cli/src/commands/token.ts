import { parseSpiffeId } from '@airlock/common/spiffe';
import { duration } from '@airlock/common/config';
import { errorMessage } from '@airlock/common/errors';
import { parseLabel } from '@airlock/common/labels';
import { UsageError } from '../args.ts';
import { credentialsOf, formatLabels, formatTable, outputOf, parseAdminFlags, print } from '../admin-command.ts';
import { adminGet, adminPost } from '../admin-client.ts';

const HELP = `Usage: airlock token create --identity spiffe://<td>/ns/<ns>/sa/<sa> [--ttl 1h] [--label KEY=VALUE]... [-o table|json|yaml]
       airlock token list [-o table|json|yaml]
       airlock token revoke ID [-o table|json|yaml]
       (each also takes [--server URL] [--credentials FILE])

create: a one-time join token bound to one SPIFFE ID. Start the sidecar with it in
AIRLOCK_JOIN_TOKEN; it is accepted once, before it expires (default 1h, at most 24h). --label
(repeatable) gives the agent a label for Segment selectors (keys and values as Kubernetes labels;
kubernetes.io/ keys are set by Kubernetes attestation only).
list: every join token: its id (a prefix of the token's hash, never the token), identity, status
(unused, used, expired, revoked) and expiry. revoke: the token with that id (or an unambiguous
prefix of at least 8 characters) is refused from now on.

Credentials: --credentials / AIRLOCK_CREDENTIALS, else .airlock/credentials.json found from the
working directory upward (the demo writes it). --server / AIRLOCK_SERVER overrides the server URL,
--ca-file / AIRLOCK_CA_FILE the CA bundle its HTTPS certificate is verified against.`;

interface CreatedToken {
  token: string;
  id: string;
  identity: string;
  expiresAt: string;
  labels?: Record<string, string>;
}

interface TokenSummary {
  id: string;
  identity: string;
  status: string;
  expiresAt: string;
  usedAt?: string;
  labels?: Record<string, string>;
}

export async function runToken(argv: string[]): Promise<number> {
  const { values, positionals } = parseAdminFlags(argv, {
    identity: { type: 'string' },
    ttl: { type: 'string' },
    label: { type: 'string', multiple: true },
  });
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const [verb, arg, ...extra] = positionals;
  const output = outputOf(values.output);
  const creds = (): ReturnType<typeof credentialsOf> => credentialsOf(values);
  if (verb === 'list' || verb === 'revoke') {
    if (values.identity !== undefined || values.ttl !== undefined || values.label !== undefined) throw new UsageError(`--identity, --ttl and --label go with \`token create\``);
    if (verb === 'list') {
      if (arg !== undefined) throw new UsageError('expected `airlock token list`');
      const { items } = (await adminGet(creds(), '/v1/join-tokens')) as { items: TokenSummary[] };
      print(output, items, () => formatTable(['ID', 'STATUS', 'EXPIRES', 'IDENTITY', 'LABELS'], items.map((t) => [t.id, t.status, t.expiresAt, t.identity, formatLabels(t.labels)])));
      return 0;
    }
    if (arg === undefined || extra.length > 0) throw new UsageError('expected `airlock token revoke <id>` (ids from `airlock token list`)');
    const result = (await adminPost(creds(), '/v1/join-tokens/revoke', { id: arg })) as { token: TokenSummary; alreadyRevoked: boolean };
    print(output, result, () => `join token ${result.token.id} for ${result.token.identity} ${result.alreadyRevoked ? 'was already revoked' : 'revoked'}`);
    return 0;
  }
  if (verb !== 'create' || arg !== undefined) throw new UsageError('expected `airlock token create|list|revoke`');
  if (typeof values.identity !== 'string') throw new UsageError('--identity is required');
  parseSpiffeId(values.identity);
  let ttlMs = 3_600_000;
  if (typeof values.ttl === 'string') {
    try {
      // No timer waits on it here: the control plane bounds a TTL.
      ttlMs = duration({ description: 'ttl', minMs: 1000, maxMs: Number.MAX_SAFE_INTEGER }).parse(values.ttl);
    } catch (err) {
      throw new UsageError(`--ttl: ${errorMessage(err)}`);
    }
  }
  const labels: Record<string, string> = {};
  for (const text of Array.isArray(values.label) ? values.label : []) {
    try {
      const [k, v] = parseLabel(String(text));
      if (k in labels) throw new Error(`label key "${k}" given twice`);
      labels[k] = v;
    } catch (err) {
      throw new UsageError(`--label: ${errorMessage(err)}`);
    }
  }
  const created = (await adminPost(creds(), '/v1/join-tokens', {
    identity: values.identity,
    ttlSeconds: Math.ceil(ttlMs / 1000),
    ...(Object.keys(labels).length === 0 ? {} : { labels }),
  })) as CreatedToken;
  if (output !== 'table') print(output, created, () => '');
  else {
    // Only the token on stdout, so `$(airlock token create …)` captures exactly it.
    console.log(created.token);
    const labelText = Object.entries(created.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(', ');
    console.error(`id:       ${created.id}\nidentity: ${created.identity}\nexpires:  ${created.expiresAt}\n${labelText === '' ? '' : `labels:   ${labelText}\n`}use once: AIRLOCK_JOIN_TOKEN=<token> airlock sidecar …`);
  }
  return 0;
}
