import { ConfigError } from '@airlock/common/errors';
import { fuzz } from '@airlock/common/testing/fuzz';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseStoreLocation } from '../store/store-location.ts';
import { checkAdminTransport, controlPlaneConfig } from './config.ts';

// The control plane's own settings (store location, admin transport) on top of the shared field
// parsers (common/src/config.fuzz.test.ts): a frozen config or one ConfigError, and what is accepted is usable.

const KEYS = Object.keys(controlPlaneConfig.schema);
const VALUES = ['', 'sqlite', 'sqlite:', 'sqlite:/var/lib/airlock', 'SQLITE', 'etcd://', 'etcd://a:2379', 'etcd://a:2379,b:22379', 'etcd://[::1]:2379', 'etcd://a:0', 'etcd://a:99999', 'etcd://a', 'etcd://a:1,', 'etcd://user@a:1', 'etcd://a:1/x',
  'tls', 'http', 'http-insecure', 'on', 'off', '127.0.0.1:15013', '0.0.0.0:15013', '[::1]:1', '[::]:1', 'localhost:1', '127.1:1', '10.0.0.1:1', '1s', '999ms', '600h', 'a.svc,b.svc', 'A.svc', 'airlock.local', 'x'];
const value = fc.oneof(fc.constantFrom(...VALUES), fc.string({ maxLength: 16 }));

describe('control-plane config (fuzz)', () => {
  it('loads a frozen config or one ConfigError; an accepted store names etcd members with ports 1..65535', () => {
    // Any settings, or the admin transport with its listener alone.
    const admin = fc.record({ adminTransport: fc.constantFrom('tls', 'http', 'http-insecure'), adminListen: fc.constantFrom(...VALUES.filter((v) => v.includes(':') && !v.startsWith('etcd'))) });
    fuzz(fc.property(fc.oneof(fc.dictionary(fc.constantFrom(...KEYS), value, { maxKeys: 3 }), admin), (flags) => {
      let config: ReturnType<typeof controlPlaneConfig.load>;
      try {
        config = controlPlaneConfig.load({ flags });
        checkAdminTransport(config);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        return;
      }
      expect(Object.isFrozen(config)).toBe(true);
      const store = parseStoreLocation(config.store);
      if (store.kind === 'etcd') {
        for (const m of store.members) {
          const port = Number(/:(\d+)$/.exec(m)?.[1]);
          expect(port).toBeGreaterThanOrEqual(1);
          expect(port).toBeLessThanOrEqual(65535);
        }
      }
      // Plain HTTP admin only on loopback.
      if (config.adminTransport === 'http') expect(['127.0.0.1', '::1', 'localhost'].includes(config.adminListen.host) || config.adminListen.host.startsWith('127.')).toBe(true);
    }), 1000);
  });
});
