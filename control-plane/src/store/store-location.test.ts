import { describe, expect, it } from 'vitest';
import { controlPlaneConfig } from '../config/config.ts';
import { parseStoreLocation } from './store-location.ts';

describe('the store setting', () => {
  it('reads sqlite (in dataDir), sqlite:DIR and etcd members', () => {
    expect(parseStoreLocation('sqlite')).toEqual({ kind: 'sqlite', dir: undefined });
    expect(parseStoreLocation('sqlite:/var/lib/airlock')).toEqual({ kind: 'sqlite', dir: '/var/lib/airlock' });
    expect(parseStoreLocation('etcd://10.0.0.1:2379, etcd-1.etcd:2379,[::1]:2379')).toEqual({ kind: 'etcd', members: ['10.0.0.1:2379', 'etcd-1.etcd:2379', '[::1]:2379'] });
  });

  it.each([
    ['mysql://db:3306', /expected sqlite, sqlite:DIR or etcd:\/\/host:port/],
    ['etcd://', /"" is not a host:port of an etcd member/],
    ['etcd://host', /"host" is not a host:port/],
    ['etcd://a:2379/path', /"a:2379\/path" is not a host:port/],
    ['etcd://user:pw@a:2379', /is not a host:port/],
    ['sqlite:', /sqlite: needs a directory/],
    // Found by config.fuzz.test.ts: five digits were taken for a port.
    ['etcd://a:0', /"a:0" is not a host:port/],
    ['etcd://a:2379,b:99999', /"b:99999" is not a host:port/],
  ])('refuses %s with a clear message, as a config error', (value, message) => {
    expect(() => parseStoreLocation(value)).toThrow(message);
    expect(() => controlPlaneConfig.load({ flags: { store: value } })).toThrow(/store/);
  });

  it('defaults to sqlite', () => {
    expect(controlPlaneConfig.load({ flags: {} }).store).toBe('sqlite');
  });
});
