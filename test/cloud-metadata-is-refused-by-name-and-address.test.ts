import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

/**
 * The built-in refusal of cloud metadata services, tried for real in a namespace with only loopback
 * (test/support/metadata-in-netns.ts): a policy allows every one of them, yet metadata names are
 * refused before resolution (here DNS points them at a reachable listener), and Alibaba's, ECS's and
 * EKS Pod Identity's addresses are refused even where the operator re-allows link-local.
 */
describe('cloud metadata destinations', () => {
  it('are refused by name and by address, in any spelling, whatever DNS, policy or egressAllowCidrs say', async () => {
    const unshareFlags = process.getuid?.() === 0 ? ['-n'] : ['-r', '-n'];
    const script = join(import.meta.dirname, 'support', 'metadata-in-netns.ts');
    const setup = 'ip link set lo up && ip addr add 10.77.9.1/32 dev lo && ip addr add 100.100.100.200/32 dev lo && ip addr add 169.254.170.2/32 dev lo && ip addr add 169.254.170.23/32 dev lo';
    const { stdout } = await run('unshare', [...unshareFlags, 'sh', '-c', `${setup} && exec "${process.execPath}" "${script}"`], { timeout: 90_000 });
    const r = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { results: Record<string, { status: number; body: unknown }>; reached: string[] };
    const refused = (address: unknown): unknown => ({ status: 403, body: expect.objectContaining({ error: 'forbidden_destination', rule: 'cloud-metadata', address }) as unknown });
    expect(r.results).toEqual({
      'metadata.google.internal': refused('metadata.google.internal'),
      'METADATA.Google.Internal': refused(expect.stringMatching(/^metadata\.google\.internal$/i)),
      metadata: refused('metadata'),
      'instance-data.ec2.internal': refused('instance-data.ec2.internal'),
      '100.100.100.200': refused('100.100.100.200'),
      '169.254.170.2': refused('169.254.170.2'),
      '169.254.170.23': refused('169.254.170.23'),
      '1684301000': refused('100.100.100.200'),
      'allowed.test': { status: 200, body: 'external ok' },
    });
    // Only the allowed name reached anything.
    expect(r.reached).toEqual(['10.77.9.1 (Host allowed.test)']);
  });
});
