import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { adminGet } from '../admin-client.ts';
import type { AdminCredentials } from '../credentials.ts';
import { formatTable, print, type Output } from '../admin-command.ts';

interface FeedStatus {
  name: string;
  source: string;
  version?: string;
  entries: number;
  badEntries: number;
  badSamples: string[];
  ageSeconds?: number;
  lastError?: string;
}

/** `airlock get threat-feeds [NAME]`: each ThreatFeed's loaded copy, bad entries, age and last error (GET /v1/threat-feeds). */
export async function getThreatFeeds(c: AdminCredentials, output: Output, name: string | undefined): Promise<number> {
  const r = (await adminGet(c, '/v1/threat-feeds')) as { version: number; items: FeedStatus[] };
  const items = r.items.filter((f) => name === undefined || f.name === name);
  if (name !== undefined && items.length === 0) throw new AirlockError(ErrorCode.NotFound, `ThreatFeed "${name}" does not exist in policy version ${r.version}`);
  print(output, { version: r.version, items }, () =>
    [
      formatTable(
        ['NAME', 'VERSION', 'ENTRIES', 'BAD', 'AGE', 'LAST ERROR'],
        items.map((f) => [f.name, f.version ?? 'not loaded', String(f.entries), String(f.badEntries), f.ageSeconds === undefined ? '-' : `${f.ageSeconds}s`, f.lastError ?? '']),
      ),
      ...items.flatMap((f) => f.badSamples.map((s) => `${f.name}: ${s}`)),
    ].join('\n'),
  );
  return 0;
}
