// For tests: the `airlock` CLI run as a user runs it, in a child process of its own.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AdminCredentials } from '../../cli/src/credentials.ts';

export const AIRLOCK_CLI = join(import.meta.dirname, '..', '..', 'cli', 'bin', 'airlock.js');

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** `airlock ARGS` with the admin credentials file `credentials` (AIRLOCK_CREDENTIALS); never rejects: a failure is its exit code. */
export function airlock(args: readonly string[], credentials: string): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [AIRLOCK_CLI, ...args], { env: { ...process.env, AIRLOCK_CREDENTIALS: credentials }, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

/**
 * Credentials files in `dir` for the CLI: the mesh's admin ones, and a viewer's (an API token the
 * admin creates, named auditor); their paths.
 */
export async function adminAndViewerCredentials(dir: string, creds: AdminCredentials): Promise<{ admin: string; viewer: string }> {
  const admin = join(dir, 'admin.json');
  writeFileSync(admin, JSON.stringify(creds));
  const created = await airlock(['api-token', 'create', '--name', 'auditor', '--role', 'viewer', '-o', 'json'], admin);
  if (created.code !== 0) throw new Error(`airlock api-token create failed (${created.code}): ${created.stderr}`);
  const viewer = join(dir, 'viewer.json');
  writeFileSync(viewer, JSON.stringify({ ...creds, token: (JSON.parse(created.stdout) as { token: string }).token }));
  return { admin, viewer };
}
