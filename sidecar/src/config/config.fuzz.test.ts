import { ConfigError } from '@airlock/common/errors';
import { fuzz } from '@airlock/common/testing/fuzz';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_CONTROL_PLANE_ENDPOINTS } from '../controlplane/endpoints.ts';
import { canonicalAddress, parseCidr } from '../outbound/destination-check.ts';
import { sidecarConfig } from './config.ts';

// The sidecar's own settings (CIDRs, DNS servers, endpoints) on top of the shared field parsers
// (common/src/config.fuzz.test.ts): a frozen config or one ConfigError, and what is accepted is usable.

const KEYS = Object.keys(sidecarConfig.schema);
const VALUES = ['', '0', '1', '250', '5s', '600h', 'x', '127.0.0.1:15012', 'a:1,b:2,c:3', Array.from({ length: 17 }, (_, i) => `h${i}:1`).join(','), '10.0.0.0/8', '10.0.0.0/33', 'fd00::/8', '::ffff:10.0.0.0/104', '::ffff:10.0.0.0/8', '0x0a000000/8', '10/8', '10.1.2.3/8', '/8', '1.2.3.4', '10.0.0.0/8,', ' 10.0.0.0/8 , fd00::/7', '169.254.169.254/32',
  '10.96.0.10', '127.0.0.1:5353', '[::1]:53', '[fd00::a]:99999', '::1', '2130706433', 'dns.example', '0177.0.0.1:53', 'stream', 'unary', 'ecdsa-p256', 'rsa-2048', 'TLSv1.2', 'TLSv1.1', 'info', '80,443', '0,1', 'spiffe://td/ns/a/sa/b', '1024', '16777217'];
const value = fc.oneof(fc.constantFrom(...VALUES), fc.string({ maxLength: 16 }));

describe('sidecar config (fuzz)', () => {
  it('loads a frozen config or one ConfigError; accepted CIDRs, DNS servers and endpoints are usable', () => {
    // Any settings, or the address lists alone (so one bad other setting does not hide them).
    const cidrs = fc.array(fc.constantFrom(...VALUES.filter((v) => /[/:.]/.test(v))), { maxLength: 3 }).map((l) => l.join(','));
    const flagsOf = fc.oneof(fc.dictionary(fc.constantFrom(...KEYS), value, { maxKeys: 3 }), fc.record({ egressForbidCidrs: cidrs, egressAllowCidrs: cidrs, egressDnsServers: cidrs }, { requiredKeys: [] }));
    fuzz(fc.property(flagsOf, (flags) => {
      let config: ReturnType<typeof sidecarConfig.load>;
      try {
        config = sidecarConfig.load({ flags });
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        return;
      }
      expect(Object.isFrozen(config)).toBe(true);
      for (const c of [...config.egressForbidCidrs, ...config.egressAllowCidrs]) {
        const { address, family, prefix } = parseCidr(c);
        expect(canonicalAddress(address)?.address).toBe(address);
        expect(prefix).toBeGreaterThanOrEqual(0);
        expect(prefix).toBeLessThanOrEqual(family === 'ipv4' ? 32 : 128);
      }
      for (const s of config.egressDnsServers) {
        const port = /:(\d+)$/.exec(s.replace(/^\[[^\]]*\]/, ''))?.[1];
        if (port !== undefined) expect(Number(port)).toBeLessThanOrEqual(65535);
      }
      expect(config.controlPlane.length).toBeLessThanOrEqual(MAX_CONTROL_PLANE_ENDPOINTS);
      expect(config.authzTimeout).toBeLessThanOrEqual(2 ** 31 - 1);
    }), 1000);
  });
});
