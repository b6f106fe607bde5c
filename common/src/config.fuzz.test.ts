import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { defineConfig, dnsNames, duration, formatHostPort, hostPort, hostPorts, integer, oneOf, optionalHostPort, optionalString, parseHostPort, ports, string, trustDomain } from './config.ts';
import { ConfigError } from './errors.ts';
import { fuzz } from './testing/fuzz.ts';

// Config comes from flags, env and a YAML file an operator writes: whatever they hold, loading
// gives a frozen config or one ConfigError naming every problem, never another exception; each
// value that is accepted reads back as itself.

const definition = defineConfig('AIRLOCK', {
  trustDomain: trustDomain({ description: 'td', default: 'airlock.local' }),
  listen: hostPort({ description: 'listen', default: { host: '127.0.0.1', port: 15001 } }),
  peers: hostPorts({ description: 'peers', default: [{ host: '127.0.0.1', port: 15012 }] }),
  admin: optionalHostPort({ description: 'admin' }),
  timeout: duration({ description: 'timeout', default: 250 }),
  workers: integer({ description: 'workers', default: 2, min: 1, max: 8 }),
  level: oneOf(['info', 'debug'] as const, { description: 'level', default: 'info' }),
  names: dnsNames({ description: 'names', default: [] }),
  plain: ports({ description: 'ports', default: [80] }),
  caFile: string({ description: 'file', default: 'ca.pem' }),
  token: optionalString({ description: 'optional', secret: true }),
});
const KEYS = Object.keys(definition.schema);

// Values as an operator (or an attacker who can set an env var) may write them.
const RAW = ['', ' ', '0', '-1', '1', '8', '9', '2.5', '1e3', '0x10', '１', '99999999999999999999999', '1'.repeat(400), '250', '250ms', '1.5s', '2m', '1h', '600h', '.5s', '5 s', '5S', 'soon', '-5s',
  '127.0.0.1:15001', '[::1]:0', '[::1]', '::1:80', 'a:65536', 'a:b:1', 'host:080', ' h:1 ', 'a:1,b:2', ',', 'a.b', 'A.B', 'a..b', '-a', 'x'.repeat(64), 'info', 'debug', 'INFO', 'airlock.local', 'Airlock', '80,443', '0', '65535,1', 'null', '~', 'true'];
const raw = fc.oneof(fc.constantFrom(...RAW), fc.string({ maxLength: 12 }));
/** A value in the YAML file: a scalar of any type, a list, a mapping. */
const fileValue = fc.oneof(raw, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(raw, { maxLength: 3 }), fc.dictionary(raw, raw, { maxKeys: 2 }));
const PROTOTYPE_NAMES = ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf', 'isPrototypeOf'];
const fileKey = fc.oneof(fc.constantFrom(...KEYS, ...PROTOTYPE_NAMES, 'Listen', 'list'), fc.string({ maxLength: 8 }));
const fileText = fc.oneof(
  fc.dictionary(fileKey, fileValue, { maxKeys: 5 }).map((o) => stringify(o)),
  fc.array(fc.tuple(fileKey, raw), { maxLength: 4 }).map((pairs) => pairs.map(([k, v]) => `${k}: ${v}`).join('\n')),
  fc.string({ maxLength: 40 }),
  fc.constantFrom('', '---', '- a\n- b', 'just text', '{', '&a [*a]', 'a: &x 1\nb: *x', '!!binary x', '%YAML 1.1\n---\nx: 1'),
);
const sources = fc.record({
  flags: fc.dictionary(fc.constantFrom(...KEYS), raw, { maxKeys: 3 }),
  env: fc.dictionary(fc.constantFrom(...KEYS).map((k) => `AIRLOCK_${k.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`), raw, { maxKeys: 3 }),
  file: fc.option(fileText.map((text) => ({ path: 'c.yaml', text })), { nil: undefined }),
});

/** The value, or the message `parse` throws (a plain Error: load turns it into a ConfigError). */
function parsed<T>(parse: (raw: unknown) => T, value: unknown): { ok: true; value: T } | { ok: false } {
  try {
    return { ok: true, value: parse(value) };
  } catch (err) {
    if (err instanceof Error && err.constructor === Error) return { ok: false };
    throw err;
  }
}

describe('config (fuzz)', () => {
  // `yaml` warns on stderr of each unknown tag (`!x`) it meets; what the loader answers is what is tested here.
  beforeAll(() => void vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined));
  afterAll(() => vi.restoreAllMocks());

  it('loads a frozen config or throws one ConfigError, whatever flags, env and file hold; an unknown file setting is always named', () => {
    fuzz(fc.property(sources, (s) => {
      let config: unknown;
      try {
        config = definition.load(s);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        expect(err.problems.length).toBeGreaterThan(0);
        return;
      }
      expect(Object.isFrozen(config)).toBe(true);
      // A file that loaded had only known settings.
      for (const k of fileKeys(s.file?.text)) expect(KEYS).toContain(k);
    }), 1000);
  });

  it('a string setting is never empty, an optional one is unset when empty', () => {
    const f = string({ description: 's' });
    const o = optionalString({ description: 'o' });
    fuzz(fc.property(fileValue, (v) => {
      const r = parsed(f.parse, v);
      if (r.ok) expect(r.value).not.toBe('');
      const ro = parsed(o.parse, v);
      if (ro.ok) expect(ro.value).not.toBe('');
    }), 1000);
  });

  it('an integer is accepted exactly when it is a whole number in range, and is that number', () => {
    const f = integer({ description: 'n', min: 1, max: 8 });
    fuzz(fc.property(fc.oneof(raw, fc.integer({ min: -20, max: 20 }).map(String)), (v) => {
      const r = parsed(f.parse, v);
      const t = v.trim();
      expect(r.ok).toBe(/^-?\d+$/.test(t) && Number(t) >= 1 && Number(t) <= 8);
      if (r.ok) expect(r.value).toBe(Number(t));
    }), 1000);
  });

  it('a duration is a whole number of milliseconds a timer can wait (1ms..2^31-1ms) and reads back as itself', () => {
    const f = duration({ description: 'd', minMs: 1 });
    const spelled = fc.tuple(fc.oneof(fc.nat().map(String), fc.constantFrom('0.5', '1.0005', '1'.repeat(30), '1'.repeat(400), '596', '597', '2147483647', '2147483648')), fc.constantFrom('', 'ms', 's', 'm', 'h')).map(([n, u]) => n + u);
    fuzz(fc.property(fc.oneof(spelled, raw), (v) => {
      const r = parsed(f.parse, v);
      if (!r.ok) return;
      expect(Number.isSafeInteger(r.value)).toBe(true);
      expect(r.value).toBeGreaterThanOrEqual(1);
      expect(r.value).toBeLessThanOrEqual(2 ** 31 - 1);
      expect(f.parse(`${r.value}ms`)).toBe(r.value);
    }), 1000);
  });

  it('a host:port reads back as itself, with a port 0..65535', () => {
    fuzz(fc.property(fc.oneof(raw, fc.tuple(fc.constantFrom('a', '127.0.0.1', '[::1]', '[fe80::1]', '::1', '[::1', 'a b', '', '[x]'), fc.constantFrom(':', ':0', ':1', ':65535', ':65536', ':00080', '')).map(([h, p]) => h + p)), (v) => {
      const r = parsed((x) => parseHostPort(String(x)), v);
      if (!r.ok) return;
      expect(r.value.port).toBeGreaterThanOrEqual(0);
      expect(r.value.port).toBeLessThanOrEqual(65535);
      expect(parseHostPort(formatHostPort(r.value))).toEqual(r.value);
    }), 1000);
  });

  it('lists (ports, DNS names, host:ports) read back as themselves', () => {
    const p = ports({ description: 'p', default: [] });
    const d = dnsNames({ description: 'd', default: [] });
    const h = hostPorts({ description: 'h', default: [] });
    fuzz(fc.property(fc.array(raw, { maxLength: 4 }), fc.boolean(), (items, asList) => {
      const input = asList ? items : items.join(',');
      const rp = parsed(p.parse, input);
      const given = (asList ? items : items.join(',').split(',')).map((i) => i.trim()).filter((i) => i !== '');
      if (rp.ok) {
        // Each item is the port in decimal digits, nothing else (`80x`, `1e3` and `0x50` are not ports).
        expect(given.every((i) => /^\d+$/.test(i))).toBe(true);
        expect(rp.value).toEqual(given.map(Number));
        expect(rp.value.every((n) => Number.isInteger(n) && n >= 1 && n <= 65535)).toBe(true);
        expect(p.parse(rp.value.join(','))).toEqual(rp.value);
      }
      const rd = parsed(d.parse, input);
      if (rd.ok) expect(d.parse(rd.value.join(','))).toEqual(rd.value);
      const rh = parsed(h.parse, input);
      if (rh.ok) expect(h.parse(rh.value.map(formatHostPort).join(','))).toEqual(rh.value);
    }), 1000);
  });
});

/** The settings a config file names, as `yaml` reads it (none when it is not a mapping). */
function fileKeys(text: string | undefined): string[] {
  if (text === undefined) return [];
  try {
    const v: unknown = parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? Object.keys(v) : [];
  } catch {
    return [];
  }
}
