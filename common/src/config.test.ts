import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.ts';
import { defineConfig, dnsNames, duration, hostPort, integer, oneOf, optionalHostPort, optionalString, ports, string, trustDomain } from './config.ts';

const definition = defineConfig('AIRLOCK', {
  trustDomain: trustDomain({ description: 'td', default: 'airlock.local' }),
  listen: hostPort({ description: 'listen', default: { host: '127.0.0.1', port: 15001 } }),
  timeout: duration({ description: 'timeout', default: 250 }),
  workers: integer({ description: 'workers', default: 2, min: 1, max: 8 }),
  level: oneOf(['info', 'debug'] as const, { description: 'level', default: 'info' }),
  caFile: string({ description: 'required' }),
  token: optionalString({ description: 'optional', secret: true }),
});

describe('defineConfig', () => {
  it('applies defaults < file < env < flags', () => {
    const c = definition.load({
      file: { path: 'c.yaml', text: 'caFile: /file.pem\ntimeout: 1s\nworkers: 3\n' },
      env: { AIRLOCK_TIMEOUT: '2s', AIRLOCK_CA_FILE: '/env.pem' },
      flags: { caFile: '/flag.pem' },
    });
    expect(c).toEqual({
      trustDomain: 'airlock.local',
      listen: { host: '127.0.0.1', port: 15001 },
      timeout: 2000,
      workers: 3,
      level: 'info',
      caFile: '/flag.pem',
      token: undefined,
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it.each([
    [{ AIRLOCK_LISTEN: 'nohost' }, 'AIRLOCK_LISTEN: expected host:port'],
    [{ AIRLOCK_LISTEN: '127.0.0.1:70000' }, 'port must be 0..65535'],
    [{ AIRLOCK_TIMEOUT: 'soon' }, 'AIRLOCK_TIMEOUT: expected a duration'],
    [{ AIRLOCK_WORKERS: '9' }, 'AIRLOCK_WORKERS: must be between 1 and 8, got 9'],
    [{ AIRLOCK_WORKERS: '2.5' }, 'expected a whole number'],
    [{ AIRLOCK_LEVEL: 'loud' }, 'expected one of info, debug, got "loud"'],
    [{ AIRLOCK_TRUST_DOMAIN: 'Bad Domain' }, 'is not a trust domain'],
    // Found by config.fuzz.test.ts: a longer timer fires after 1 ms (and 1e400 read as Infinity).
    [{ AIRLOCK_TIMEOUT: '600h' }, 'AIRLOCK_TIMEOUT: must be at most 2147483647ms'],
    [{ AIRLOCK_TIMEOUT: '99999999999999999999h' }, 'AIRLOCK_TIMEOUT: must be at most 2147483647ms'],
  ])('rejects %j with a precise message', (env, message) => {
    expect(() => definition.load({ env: { AIRLOCK_CA_FILE: '/x', ...env } })).toThrow(message);
  });

  it('reports every problem at once, including missing required settings and unknown file keys', () => {
    try {
      definition.load({ env: { AIRLOCK_WORKERS: '0' }, file: { path: 'c.yaml', text: 'colour: blue\n' } });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems;
      expect(problems).toHaveLength(3);
      expect(problems.join('\n')).toContain('unknown setting "colour"');
      expect(problems.join('\n')).toContain('caFile is required');
      expect((err as ConfigError).code).toBe('AIRLOCK_CONFIG_INVALID');
    }
  });

  it('names a file setting that is a name of every object (constructor, toString, __proto__) as unknown', () => {
    // Found by config.fuzz.test.ts: `key in schema` found them on Object.prototype and let them pass unnamed.
    for (const key of ['constructor', 'toString', '__proto__', 'valueOf']) {
      expect(() => definition.load({ env: { AIRLOCK_CA_FILE: '/x' }, file: { path: 'c.yaml', text: `${key}: x\n` } }), key).toThrow(`unknown setting "${key}"`);
    }
  });

  it('rejects a config file that is not a mapping', () => {
    expect(() => definition.load({ env: { AIRLOCK_CA_FILE: '/x' }, file: { path: 'c.yaml', text: '- a\n- b\n' } })).toThrow('c.yaml: the file must hold a mapping');
  });

  it('documents every setting with its flag and env var', () => {
    const docs = definition.docs();
    expect(docs).toContain('| `caFile` | `--ca-file` | `AIRLOCK_CA_FILE` |');
    expect(docs).toContain('`127.0.0.1:15001`');
  });

  it('reads DNS names from a comma-separated flag or a YAML list, and an optional listener', () => {
    const d = defineConfig('AIRLOCK', { names: dnsNames({ description: 'n', default: [] }), listen: optionalHostPort({ description: 'l' }) });
    expect(d.load({})).toEqual({ names: [], listen: undefined });
    expect(d.load({ flags: { names: 'a.svc, b.ns.svc', listen: '0.0.0.0:15017' } })).toEqual({ names: ['a.svc', 'b.ns.svc'], listen: { host: '0.0.0.0', port: 15017 } });
    expect(d.load({ file: { path: 'c.yaml', text: 'names: [a.svc]\n' } }).names).toEqual(['a.svc']);
    for (const bad of ['UPPER.svc', 'a..b', '*.svc', 'a_b.svc', `${'a'.repeat(64)}.svc`, 'a.svc/x']) {
      expect(() => d.load({ flags: { names: bad } }), bad).toThrow('is not a DNS name');
    }
    expect(() => d.load({ flags: { listen: 'nope' } })).toThrow('expected host:port');
  });

  it('reads ports from a comma-separated flag or a YAML list; empty is none; anything but 1..65535 is refused', () => {
    const d = defineConfig('AIRLOCK', { plain: ports({ description: 'p', default: [80] }) });
    expect(d.load({}).plain).toEqual([80]);
    expect(d.docs()).toContain('| `80` |');
    expect(d.load({ flags: { plain: '80, 8080' } }).plain).toEqual([80, 8080]);
    expect(d.load({ env: { AIRLOCK_PLAIN: '' } }).plain).toEqual([]);
    expect(d.load({ file: { path: 'c.yaml', text: 'plain: [80, 8000]\n' } }).plain).toEqual([80, 8000]);
    for (const bad of ['0', '65536', '-1', '8o', '0x50', '1e2', '80.0']) expect(() => d.load({ flags: { plain: bad } }), bad).toThrow('is not a port');
  });
});
