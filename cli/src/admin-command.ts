import type { ParseArgsConfig } from 'node:util';
import { stringify } from 'yaml';
import { parseFlags, UsageError } from './args.ts';
import { resolveCredentials, type AdminCredentials } from './credentials.ts';

/** What every admin command shares: its flags, output formats, credentials and printing. */
export const ADMIN_COMMAND_HELP = `Output: -o table (default, for people) | json | yaml (for scripts).
Credentials: --credentials FILE / AIRLOCK_CREDENTIALS, else .airlock/credentials.json found from the
working directory upward (the demo writes it); --server URL / AIRLOCK_SERVER overrides the server,
--ca-file FILE / AIRLOCK_CA_FILE the CA bundle its HTTPS certificate is verified against.`;

export type Output = 'table' | 'json' | 'yaml';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parses an admin command's flags: its own, plus -h, -o, --server and --credentials. */
export function parseAdminFlags(argv: readonly string[], extra: Options = {}): ReturnType<typeof parseFlags> {
  return parseFlags(argv, {
    help: { type: 'boolean', short: 'h' },
    output: { type: 'string', short: 'o' },
    server: { type: 'string' },
    credentials: { type: 'string' },
    'ca-file': { type: 'string' },
    ...extra,
  });
}

export function outputOf(value: unknown): Output {
  if (value === undefined) return 'table';
  if (value !== 'table' && value !== 'json' && value !== 'yaml') {
    throw new UsageError(`-o must be table, json or yaml, got "${typeof value === 'string' ? value : 'a flag'}"`);
  }
  return value;
}

/** Resolved lazily by callers, so usage errors are reported before a missing credentials file. */
export function credentialsOf(values: Readonly<Record<string, unknown>>): AdminCredentials {
  return resolveCredentials({
    env: process.env,
    cwd: process.cwd(),
    ...(typeof values.credentials === 'string' ? { credentials: values.credentials } : {}),
    ...(typeof values.server === 'string' ? { server: values.server } : {}),
    ...(typeof values['ca-file'] === 'string' ? { caFile: values['ca-file'] } : {}),
  });
}

/** json/yaml print `data` for scripts; table prints what `human` renders for people. */
export function print(output: Output, data: unknown, human: () => string): void {
  if (output === 'json') console.log(JSON.stringify(data, null, 2));
  else if (output === 'yaml') process.stdout.write(stringify(data));
  else console.log(human());
}

/** Columns padded to their widest cell. */
export function formatTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

/** Labels as a table cell: k=v,k=v, or - for none. */
export function formatLabels(labels: Readonly<Record<string, string>> | undefined): string {
  return Object.entries(labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '-';
}
