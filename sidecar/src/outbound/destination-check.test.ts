import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@airlock/common/errors';
import { sidecarConfig } from '../config/config.ts';
import { canonicalAddress, DestinationCheck, ForbiddenDestinationError, parseCidr, type DestinationCheckOptions } from './destination-check.ts';

const OWN_PORTS = [15001, 15006, 15020];
const check = (o: Partial<DestinationCheckOptions> = {}): DestinationCheck =>
  new DestinationCheck({ forbidCidrs: [], allowCidrs: [], ownPorts: () => OWN_PORTS, controlPlane: () => ['10.9.0.5:15012'], resolve: () => Promise.reject(new Error('no DNS in this test')), ...o });

/** The rule that refuses `host:port` (an IP literal in any spelling), or 'allowed'. */
async function ruleOf(c: DestinationCheck, host: string, port = 80): Promise<string> {
  try {
    await c.check({ host, port });
    return 'allowed';
  } catch (err) {
    if (err instanceof ForbiddenDestinationError) return err.rule;
    throw err;
  }
}

describe('the forbidden address set, in every spelling', () => {
  it.each([
    // cloud metadata: dotted, decimal, hex, octal, short forms, trailing dot, IPv4-mapped IPv6 (dotted and hex), AWS's IPv6 one
    ['169.254.169.254', 'cloud-metadata'], ['2852039166', 'cloud-metadata'], ['0xA9FEA9FE', 'cloud-metadata'], ['0xa9.0xfe.0xa9.0xfe', 'cloud-metadata'],
    ['0251.0376.0251.0376', 'cloud-metadata'], ['169.254.43518', 'cloud-metadata'], ['169.16689662', 'cloud-metadata'], ['169.254.169.254.', 'cloud-metadata'],
    ['::ffff:169.254.169.254', 'cloud-metadata'], ['[::ffff:a9fe:a9fe]', 'cloud-metadata'], ['0:0:0:0:0:ffff:a9fe:a9fe', 'cloud-metadata'],
    ['fd00:ec2::254', 'cloud-metadata'], ['[FD00:EC2:0:0:0:0:0:254]', 'cloud-metadata'],
    // GCP's IPv6 metadata server, EKS Pod Identity's IPv6 one, ECS task credentials, Alibaba Cloud's
    ['fd20:ce::254', 'cloud-metadata'], ['fd00:ec2::23', 'cloud-metadata'], ['::ffff:169.254.170.2', 'cloud-metadata'], ['0x646464c8', 'cloud-metadata'], ['100.100.100.100', 'allowed'],
    // loopback
    ['127.0.0.1', 'loopback'], ['127.1', 'loopback'], ['2130706433', 'loopback'], ['0x7f000001', 'loopback'], ['0177.0.0.1', 'loopback'], ['0x7f.1', 'loopback'],
    ['127.255.255.254', 'loopback'], ['::1', 'loopback'], ['0:0:0:0:0:0:0:1', 'loopback'], ['::ffff:127.0.0.1', 'loopback'], ['::ffff:7f00:1', 'loopback'],
    // link-local
    ['169.254.0.1', 'link-local'], ['0xa9fe0001', 'link-local'], ['fe80::1', 'link-local'], ['febf:ffff::1', 'link-local'], ['::ffff:169.254.1.1', 'link-local'],
    // unspecified (connects to this host on Linux)
    ['0.0.0.0', 'unspecified'], ['0', 'unspecified'], ['0x0', 'unspecified'], ['0.1.2.3', 'unspecified'], ['::', 'unspecified'], ['::ffff:0.0.0.0', 'unspecified'],
    // the IPv4 address an IPv6 one carries to a translator: NAT64 (64:ff9b::/96) and 6to4 (2002::/16)
    ['64:ff9b::a9fe:a9fe', 'cloud-metadata'], ['[64:ff9b::169.254.169.254]', 'cloud-metadata'], ['2002:a9fe:a9fe::1', 'cloud-metadata'],
    ['64:ff9b::7f00:1', 'loopback'], ['2002:7f00:1::', 'loopback'], ['64:ff9b::a9fe:1', 'link-local'], ['64:ff9b::', 'unspecified'],
    ['64:ff9b::808:808', 'allowed'], ['2002:808:808::1', 'allowed'], ['64:ff9b:1::a9fe:a9fe', 'allowed'],
    // ordinary addresses are not in the set
    ['93.184.216.34', 'allowed'], ['1572395042', 'allowed'], ['10.1.2.3', 'allowed'], ['fec0::1', 'allowed'], ['2606:2800:220:1::1', 'allowed'], ['::ffff:93.184.216.34', 'allowed'],
  ])('%s → %s', async (host, rule) => {
    expect(await ruleOf(check(), host)).toBe(rule);
  });

  it("refuses the sidecar's own ports on every local address, and the control plane's endpoint", async () => {
    // Even with loopback allowed explicitly, an external call never reaches the sidecar itself.
    const c = check({ allowCidrs: ['127.0.0.0/8', '::1/128'] });
    expect(await ruleOf(c, '127.0.0.1', 15001)).toBe('sidecar-port');
    expect(await ruleOf(c, '127.9.9.9', 15020)).toBe('sidecar-port');
    expect(await ruleOf(c, '::ffff:7f00:1', 15006)).toBe('sidecar-port');
    expect(await ruleOf(c, '[::1]', 15006)).toBe('sidecar-port');
    expect(await ruleOf(c, '127.0.0.1', 8080)).toBe('allowed');
    expect(await ruleOf(c, '10.9.0.5', 15012)).toBe('control-plane');
    expect(await ruleOf(c, '168361989', 15012)).toBe('control-plane');
    expect(await ruleOf(c, '10.9.0.5', 443)).toBe('allowed');
  });

  it('refuses operator CIDRs in any spelling, and an operator-allowed CIDR re-allows a range but never metadata', async () => {
    const c = check({ forbidCidrs: ['10.0.0.0/8', 'fd00::/8'], allowCidrs: ['10.1.2.0/24', '169.254.0.0/16'] });
    expect(await ruleOf(c, '10.200.0.1')).toBe('operator-cidr');
    expect(await ruleOf(c, '012.0.0.1')).toBe('operator-cidr');
    expect(await ruleOf(c, '::ffff:a00:1')).toBe('operator-cidr');
    expect(await ruleOf(c, 'fd12::1')).toBe('operator-cidr');
    expect(await ruleOf(c, '64:ff9b::a00:1')).toBe('operator-cidr');
    expect(await ruleOf(c, '2002:a01:203::')).toBe('allowed');
    expect(await ruleOf(c, '10.1.2.3')).toBe('allowed');
    expect(await ruleOf(c, '169.254.1.1')).toBe('allowed');
    expect(await ruleOf(c, '169.254.169.254')).toBe('cloud-metadata');
  });

  it('refuses a name if ANY address it resolves to is forbidden, and hands back a checked address', async () => {
    const answers: Record<string, string[]> = { 'rebind.test': ['93.184.216.34', '169.254.169.254'], 'mapped.test': ['::ffff:169.254.169.254'], 'ok.test': ['93.184.216.34', '2606:2800:220:1::1'] };
    const c = check({ resolve: (host) => Promise.resolve(answers[host] ?? []) });
    await expect(c.check({ host: 'rebind.test', port: 80 })).rejects.toMatchObject({ code: ErrorCode.ForbiddenDestination, rule: 'cloud-metadata', address: '169.254.169.254' });
    await expect(c.check({ host: 'mapped.test', port: 443 })).rejects.toMatchObject({ rule: 'cloud-metadata', address: '169.254.169.254' });
    await expect(c.check({ host: 'ok.test', port: 443 })).resolves.toEqual({ host: 'ok.test', port: 443, addresses: ['93.184.216.34', '2606:2800:220:1::1'] });
    await expect(c.check({ host: 'none.test', port: 80 })).rejects.toMatchObject({ code: ErrorCode.UpstreamUnavailable });
  });
});

describe('canonicalAddress and parseCidr', () => {
  it('read names as names and refuse what is not a CIDR', () => {
    expect(canonicalAddress('api.example.com')).toBeUndefined();
    expect(canonicalAddress('0x7f.1')).toEqual({ address: '127.0.0.1', family: 'ipv4' });
    expect(parseCidr('::ffff:10.0.0.0/104')).toEqual({ address: '10.0.0.0', family: 'ipv4', prefix: 8 });
    expect(() => parseCidr('10.0.0.0/33')).toThrow(/prefix length/);
    expect(() => parseCidr('example.com/8')).toThrow(/not a CIDR/);
    expect(() => parseCidr('10.0.0.0')).toThrow(/not a CIDR/);
  });
});

describe('the egress settings', () => {
  const load = (flags: Record<string, string>) => sidecarConfig.load({ flags });
  it('read CIDRs and DNS servers, and refuse what is neither', () => {
    const config = load({ egressForbidCidrs: '10.0.0.0/8, fd00::/8', egressAllowCidrs: '10.1.2.0/24', egressDnsServers: '127.0.0.1:5353,[fd00::a]:53,10.96.0.10' });
    expect(config.egressForbidCidrs).toEqual(['10.0.0.0/8', 'fd00::/8']);
    expect(config.egressAllowCidrs).toEqual(['10.1.2.0/24']);
    expect(config.egressDnsServers).toEqual(['127.0.0.1:5353', '[fd00::a]:53', '10.96.0.10']);
    expect(() => load({ egressForbidCidrs: '10.0.0.0/33' })).toThrow(/--egress-forbid-cidrs.*prefix length/s);
    expect(() => load({ egressAllowCidrs: 'internal.example.com/8' })).toThrow(/not a CIDR/);
    expect(() => load({ egressDnsServers: 'dns.example.com' })).toThrow(/not an IP address/);
  });
});
