import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

describe('egress to a forbidden external destination', () => {
  it('is denied before any connection is opened (checked in a namespace with only loopback)', async () => {
    // Root (CI) makes the namespace directly; elsewhere a user namespace maps us to root inside it.
    const unshareFlags = process.getuid?.() === 0 ? ['-n'] : ['-r', '-n'];
    const script = join(import.meta.dirname, 'support', 'egress-in-netns.ts');
    const { stdout } = await run(
      'unshare',
      [...unshareFlags, 'sh', '-c', `ip link set lo up && exec "${process.execPath}" "${script}"`],
      { timeout: 60_000 },
    );
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
      interfaces: string[];
      metadata: { status: number; body: { error: string } };
      publicHost: { status: number; body: { error: string } };
      connectStatus: string;
      allowed: { status: number; text: string };
    };
    expect(result.interfaces).toEqual(['lo']);
    expect(result.metadata).toMatchObject({ status: 403, body: { error: 'denied' } });
    expect(result.publicHost).toMatchObject({ status: 403, body: { error: 'denied' } });
    expect(result.connectStatus).toMatch(/^HTTP\/1\.1 403/);
    // The same sidecar does reach an external host the policy allows.
    expect(result.allowed).toEqual({ status: 200, text: 'external ok' });
  });
});
