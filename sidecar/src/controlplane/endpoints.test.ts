import { describe, expect, it } from 'vitest';
import { ConfigError } from '@airlock/common/errors';
import { sidecarConfig } from '../config/config.ts';
import { quietLogger } from '../testing/fakes.ts';
import { ControlPlaneEndpoints, MAX_CONTROL_PLANE_ENDPOINTS, resolveEndpoints, type ResolveHost } from './endpoints.ts';

/** A resolver that never leaves the process: names from a table, anything else fails as DNS would. */
function tableResolver(table: Record<string, readonly string[]>): ResolveHost & { readonly asked: string[] } {
  const asked: string[] = [];
  const resolve = (host: string): Promise<readonly string[]> => {
    asked.push(host);
    const ips = table[host];
    return ips === undefined ? Promise.reject(new Error(`getaddrinfo ENOTFOUND ${host}`)) : Promise.resolve(ips);
  };
  return Object.assign(resolve, { asked });
}

const logger = quietLogger();
const load = (flags: Record<string, string>, file?: string) => sidecarConfig.load({ flags, ...(file === undefined ? {} : { file: { path: 'sidecar.yaml', text: file } }) });

describe('the controlPlane setting', () => {
  it('takes one host:port, a comma-separated list, or a YAML list', () => {
    expect(load({}).controlPlane).toEqual([{ host: '127.0.0.1', port: 15012 }]);
    expect(load({ controlPlane: 'cp.airlock-system.svc:15012' }).controlPlane).toEqual([{ host: 'cp.airlock-system.svc', port: 15012 }]);
    expect(load({ controlPlane: '10.0.0.1:15012, 10.0.0.2:15012,[::1]:7' }).controlPlane).toEqual([
      { host: '10.0.0.1', port: 15012 },
      { host: '10.0.0.2', port: 15012 },
      { host: '::1', port: 7 },
    ]);
    expect(load({}, 'controlPlane: [a:1, b:2]\n').controlPlane).toEqual([{ host: 'a', port: 1 }, { host: 'b', port: 2 }]);
  });

  it('refuses an empty list, an entry without a port and more than the bound', () => {
    const problems = (flags: Record<string, string>): readonly string[] => {
      try {
        load(flags);
      } catch (err) {
        if (err instanceof ConfigError) return err.problems;
        throw err;
      }
      return [];
    };
    expect(problems({ controlPlane: ' , ' })).toEqual(['--control-plane: expected at least one host:port']);
    expect(problems({ controlPlane: 'a:1,b' })).toEqual(['--control-plane: expected host:port (e.g. 127.0.0.1:15001), got "b"']);
    const many = Array.from({ length: MAX_CONTROL_PLANE_ENDPOINTS + 1 }, (_, i) => `10.0.0.${i}:15012`).join(',');
    expect(problems({ controlPlane: many })).toEqual([`--control-plane: at most ${MAX_CONTROL_PLANE_ENDPOINTS} endpoints, got ${MAX_CONTROL_PLANE_ENDPOINTS + 1}`]);
  });
});

describe('resolveEndpoints', () => {
  it('dials an IP as it is and a name as every address it resolves to, sorted and once each', async () => {
    const resolve = tableResolver({ 'cp.svc': ['10.0.0.3', '10.0.0.1', 'fd00::2'] });
    const { addresses, failures } = await resolveEndpoints([{ host: 'cp.svc', port: 15012 }, { host: '10.0.0.1', port: 15012 }, { host: '127.0.0.1', port: 1 }], resolve);
    expect(addresses).toEqual(['10.0.0.1:15012', '10.0.0.3:15012', '127.0.0.1:1', '[fd00::2]:15012']);
    expect(failures).toEqual([]);
    expect(resolve.asked).toEqual(['cp.svc']); // IP literals are never looked up
  });

  it('keeps what a name resolved to last when it fails to resolve, else dials the name itself', async () => {
    const resolve = tableResolver({});
    const first = await resolveEndpoints([{ host: 'cp.svc', port: 15012 }], resolve);
    expect(first.addresses).toEqual(['cp.svc:15012']);
    expect(first.failures).toEqual([{ name: 'cp.svc:15012', reason: 'getaddrinfo ENOTFOUND cp.svc' }]);
    const again = await resolveEndpoints([{ host: 'cp.svc', port: 15012 }], resolve, new Map([['cp.svc:15012', ['10.0.0.7:15012']]]));
    expect(again.addresses).toEqual(['10.0.0.7:15012']);
  });

  it('takes at most MAX_CONTROL_PLANE_ENDPOINTS addresses from a large answer', async () => {
    const ips = Array.from({ length: 40 }, (_, i) => `10.0.1.${i}`);
    const { addresses } = await resolveEndpoints([{ host: 'cp.svc', port: 1 }], tableResolver({ 'cp.svc': ips }));
    expect(addresses).toHaveLength(MAX_CONTROL_PLANE_ENDPOINTS);
  });
});

describe('ControlPlaneEndpoints', () => {
  it('resolves again periodically and tells listeners only of a change', async () => {
    const table: Record<string, readonly string[]> = { 'cp.svc': ['127.0.0.2'] };
    const resolve = tableResolver(table);
    const endpoints = new ControlPlaneEndpoints({ configured: [{ host: 'cp.svc', port: 15012 }], refreshMs: 20, logger, resolve });
    const heard: (readonly string[])[] = [];
    endpoints.onChange((a) => heard.push(a));
    try {
      expect(endpoints.current()).toEqual(['cp.svc:15012']); // before the first resolution
      await endpoints.start();
      expect(endpoints.current()).toEqual(['127.0.0.2:15012']);
      // A replica added behind the name: the next periodic resolution brings it.
      table['cp.svc'] = ['127.0.0.3', '127.0.0.2'];
      await expect.poll(() => endpoints.current()).toEqual(['127.0.0.2:15012', '127.0.0.3:15012']);
      const asked = resolve.asked.length;
      await expect.poll(() => resolve.asked.length).toBeGreaterThan(asked + 2);
      expect(heard).toEqual([['127.0.0.2:15012'], ['127.0.0.2:15012', '127.0.0.3:15012']]);
    } finally {
      endpoints.close();
    }
  });

  it('resolves with the system resolver by default (localhost only: /etc/hosts, nothing leaves the machine)', async () => {
    const endpoints = new ControlPlaneEndpoints({ configured: [{ host: 'localhost', port: 15012 }], refreshMs: 60_000, logger });
    try {
      await endpoints.start();
      expect(endpoints.current().length).toBeGreaterThan(0);
      for (const a of endpoints.current()) expect(a).toMatch(/^(127\.\d+\.\d+\.\d+|\[::1\]):15012$/);
    } finally {
      endpoints.close();
    }
  });

  it('does not resolve periodically when every endpoint is an IP', async () => {
    const resolve = tableResolver({});
    const endpoints = new ControlPlaneEndpoints({ configured: [{ host: '127.0.0.1', port: 1 }, { host: '127.0.0.1', port: 2 }], refreshMs: 1, logger, resolve });
    await endpoints.start();
    await new Promise((r) => setTimeout(r, 20));
    endpoints.close();
    expect(resolve.asked).toEqual([]);
    expect(endpoints.current()).toEqual(['127.0.0.1:1', '127.0.0.1:2']);
  });
});
