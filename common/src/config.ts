import { createRequire } from 'node:module';
import { ConfigError, errorMessage } from './errors.ts';
import { DNS_SUBDOMAIN } from './labels.ts';
import { isValidTrustDomain } from './spiffe.ts';

// The yaml library is loaded only when a config file is given: most processes (every sidecar in the
// bench and the tests) are configured by flags and env, and need not hold it in their heap.
const load = createRequire(import.meta.url);
function parseYaml(text: string): unknown {
  return (load('yaml') as typeof import('yaml')).parse(text);
}

/**
 * One validated, frozen config per process, from defaults < file < environment < flags.
 * Each field is declared once (type, default, description); flags, env names and the docs table
 * are derived from that declaration, so they cannot drift apart.
 */
export interface Field<T> {
  readonly type: string;
  readonly description: string;
  readonly default: T | undefined;
  readonly secret: boolean;
  /** Unset is fine (the value is then undefined); otherwise a field without a default is required. */
  readonly optional: boolean;
  /** Turns a raw value (string from env/flags, any from the file) into T, or throws a message. */
  readonly parse: (raw: unknown) => T;
}

type Schema = Record<string, Field<unknown>>;
export type ConfigOf<S extends Schema> = { readonly [K in keyof S]: S[K] extends Field<infer T> ? T : never };

interface FieldOptions<T> {
  description: string;
  default?: T;
  secret?: boolean;
}

function field<T>(type: string, parse: (raw: unknown) => T, o: FieldOptions<T>, optional = false): Field<T> {
  return { type, description: o.description, default: o.default, secret: o.secret ?? false, optional, parse };
}

function asString(raw: unknown): string {
  if (typeof raw === 'string') return raw;
  if (typeof raw === 'number' || typeof raw === 'boolean') return String(raw);
  throw new Error(`expected a string, got ${raw === null ? 'null' : typeof raw}`);
}

export const string = (o: FieldOptions<string>): Field<string> =>
  field('string', (raw) => {
    const s = asString(raw);
    if (s === '') throw new Error('must not be empty');
    return s;
  }, o);

/** An optional string: empty means unset. */
export const optionalString = (o: FieldOptions<string | undefined>): Field<string | undefined> =>
  field('string', (raw) => {
    const s = asString(raw);
    return s === '' ? undefined : s;
  }, o, true);

export const integer = (o: FieldOptions<number> & { min: number; max: number }): Field<number> =>
  field(`integer ${o.min}..${o.max}`, (raw) => {
    const s = asString(raw).trim();
    if (!/^-?\d+$/.test(s)) throw new Error(`expected a whole number, got "${s}"`);
    const n = Number(s);
    if (n < o.min || n > o.max) throw new Error(`must be between ${o.min} and ${o.max}, got ${n}`);
    return n;
  }, o);

/** The longest a Node timer waits: a longer one fires after 1 ms (a timeout at once, an interval in a busy loop). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A duration: a number of milliseconds, or a number with a unit (250ms, 5s, 1m, 1h), at most `maxMs` (MAX_TIMER_MS). */
export const duration = (o: FieldOptions<number> & { minMs?: number; maxMs?: number }): Field<number> =>
  field('duration (e.g. 250ms, 5s, 1h)', (raw) => {
    const s = asString(raw).trim();
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s);
    if (m === null) throw new Error(`expected a duration such as 250ms, 30s or 1h, got "${s}"`);
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h'];
    const ms = Math.round(Number(m[1]) * unit);
    const min = o.minMs ?? 1;
    if (ms < min) throw new Error(`must be at least ${min}ms, got "${s}"`);
    const max = o.maxMs ?? MAX_TIMER_MS;
    if (!(ms <= max)) throw new Error(`must be at most ${max}ms${max === MAX_TIMER_MS ? ' (about 596h, the longest a timer waits)' : ''}, got "${s.slice(0, 40)}"`);
    return ms;
  }, o);

export const oneOf = <T extends string>(values: readonly T[], o: FieldOptions<T>): Field<T> =>
  field(values.join(' | '), (raw) => {
    const s = asString(raw);
    if (!(values as readonly string[]).includes(s)) throw new Error(`expected one of ${values.join(', ')}, got "${s}"`);
    return s as T;
  }, o);

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export function parseHostPort(s: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s.trim());
  if (m === null) throw new Error(`expected host:port (e.g. 127.0.0.1:15001), got "${s}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`port must be 0..65535, got ${port}`);
  return { host: m[1] ?? m[2] ?? '', port };
}

export function formatHostPort(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

export const hostPort = (o: FieldOptions<ListenAddress>): Field<ListenAddress> =>
  field('host:port', (raw) => parseHostPort(asString(raw)), o);

/** Several host:port: a YAML list in the file, comma-separated in a flag or env var; at least one. */
export const hostPorts = (o: FieldOptions<readonly ListenAddress[]>): Field<readonly ListenAddress[]> =>
  field('host:port[,host:port…]', (raw) => {
    const items = (Array.isArray(raw) ? raw.map(asString) : asString(raw).split(',')).map((s) => s.trim()).filter((s) => s !== '');
    if (items.length === 0) throw new Error('expected at least one host:port');
    return Object.freeze(items.map(parseHostPort));
  }, o);

/** An optional listener: unset (or empty) means the listener is off. */
export const optionalHostPort = (o: FieldOptions<ListenAddress | undefined>): Field<ListenAddress | undefined> =>
  field('host:port', (raw) => {
    const s = asString(raw);
    return s === '' ? undefined : parseHostPort(s);
  }, o, true);

/**
 * DNS names (lowercase RFC 1123, each at most 253 characters): a YAML list in the file, comma-separated
 * in a flag or env var.
 */
export const dnsNames = (o: FieldOptions<readonly string[]>): Field<readonly string[]> =>
  field('DNS names (comma-separated)', (raw) => {
    const items = Array.isArray(raw) ? raw.map(asString) : asString(raw).split(',');
    const names = items.map((n) => n.trim()).filter((n) => n !== '');
    for (const n of names) {
      if (n.length > 253 || !DNS_SUBDOMAIN.test(n) || n.split('.').some((l) => l.length > 63)) throw new Error(`"${n}" is not a DNS name (lowercase letters, digits, "-", ".")`);
    }
    return Object.freeze(names);
  }, o);

export const port = (o: FieldOptions<number>): Field<number> =>
  integer({ ...o, min: 1, max: 65535 });

/** TCP ports (1..65535): a YAML list in the file, comma-separated in a flag or env var; empty is none. */
export const ports = (o: FieldOptions<readonly number[]>): Field<readonly number[]> =>
  field('ports (comma-separated)', (raw) => {
    const items = (Array.isArray(raw) ? raw.map(asString) : asString(raw).split(',')).map((s) => s.trim()).filter((s) => s !== '');
    return Object.freeze(items.map((s) => {
      const n = /^\d{1,5}$/.test(s) ? Number(s) : NaN;
      if (!(n >= 1 && n <= 65535)) throw new Error(`"${s}" is not a port (1..65535)`);
      return n;
    }));
  }, o);

export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function envName(prefix: string, key: string): string {
  return `${prefix}_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

export interface ConfigSources {
  /** Values from command-line flags, keyed by field name (camelCase); undefined = not given. */
  readonly flags?: Readonly<Record<string, string | undefined>>;
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** A YAML or JSON config file: its path (for messages) and text. */
  readonly file?: { readonly path: string; readonly text: string };
}

export interface ConfigDefinition<S extends Schema> {
  readonly schema: S;
  readonly envPrefix: string;
  load(sources: ConfigSources): ConfigOf<S>;
  /** A Markdown table of every setting: key, flag, env, type, default, description. */
  docs(): string;
}

export function defineConfig<S extends Schema>(envPrefix: string, schema: S): ConfigDefinition<S> {
  return {
    schema,
    envPrefix,
    load(sources) {
      const problems: string[] = [];
      let fileValues: Record<string, unknown> = {};
      if (sources.file !== undefined) {
        try {
          const parsed: unknown = parseYaml(sources.file.text);
          if (parsed === null || parsed === undefined) fileValues = {};
          else if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('the file must hold a mapping of settings');
          else fileValues = parsed as Record<string, unknown>;
        } catch (err) {
          problems.push(`${sources.file.path}: ${errorMessage(err)}`);
        }
        for (const key of Object.keys(fileValues)) {
          if (!Object.hasOwn(schema, key)) problems.push(`${sources.file.path}: unknown setting "${key}" (known: ${Object.keys(schema).join(', ')})`);
        }
      }
      const out: Record<string, unknown> = {};
      for (const [key, f] of Object.entries(schema)) {
        const env = envName(envPrefix, key);
        const candidates: [string, unknown][] = [
          [`--${flagName(key)}`, sources.flags?.[key]],
          [env, sources.env?.[env]],
          [sources.file === undefined ? '' : `${sources.file.path}: ${key}`, fileValues[key]],
        ];
        const given = candidates.find(([, v]) => v !== undefined);
        if (given === undefined) {
          if (f.default === undefined && !f.optional) problems.push(`${key} is required (flag --${flagName(key)} or env ${env})`);
          out[key] = f.default;
          continue;
        }
        try {
          out[key] = f.parse(given[1]);
        } catch (err) {
          problems.push(`${given[0]}: ${errorMessage(err)}`);
        }
      }
      if (problems.length > 0) throw new ConfigError(problems);
      return Object.freeze(out) as ConfigOf<S>;
    },
    docs() {
      const rows = Object.entries(schema).map(([key, f]) => {
        const def = f.default === undefined ? '—' : `\`${describeDefault(f.default)}\``;
        return `| \`${key}\` | \`--${flagName(key)}\` | \`${envName(envPrefix, key)}\` | ${f.type} | ${def} | ${f.description} |`;
      });
      return ['| setting | flag | env | type | default | description |', '|---|---|---|---|---|---|', ...rows].join('\n');
    },
  };
}

function describeDefault(value: unknown): string {
  if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'object' && v !== null && 'port' in v)) return (value as ListenAddress[]).map(formatHostPort).join(',');
  if (typeof value === 'object' && value !== null && 'port' in value) return formatHostPort(value as ListenAddress);
  if (Array.isArray(value) && value.every((v) => typeof v === 'number')) return value.join(',');
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? String(value) : JSON.stringify(value);
}

/** Names of secret settings, for log redaction. */
export function secretKeys(schema: Schema): string[] {
  return Object.entries(schema).filter(([, f]) => f.secret).map(([k]) => k);
}

/** A field with an extra check; `check` returns what is wrong, or undefined. */
export function refine<T>(f: Field<T>, check: (value: T) => string | undefined): Field<T> {
  return {
    ...f,
    parse: (raw) => {
      const value = f.parse(raw);
      const problem = check(value);
      if (problem !== undefined) throw new Error(problem);
      return value;
    },
  };
}

export const trustDomain = (o: FieldOptions<string>): Field<string> =>
  refine(string(o), (td) => (isValidTrustDomain(td) ? undefined : `"${td}" is not a trust domain (lowercase letters, digits, ".", "-", "_")`));

/** The lowest TLS version a process's TLS servers accept and its TLS clients offer (Node's names). */
export type TlsMinVersion = 'TLSv1.3' | 'TLSv1.2';
export const DEFAULT_TLS_MIN_VERSION: TlsMinVersion = 'TLSv1.3';

/**
 * The `tlsMinVersion` setting, the same for the sidecar and the control plane. TLS 1.3 only by
 * default: every party of the mesh is ours and speaks it. 1.2 is for interop with a peer that
 * cannot (with Node's default TLS 1.2 cipher suites).
 */
export const tlsMinVersion = (o: { description: string }): Field<TlsMinVersion> =>
  oneOf<TlsMinVersion>(['TLSv1.3', 'TLSv1.2'], { description: `${o.description} \`TLSv1.2\` only for interop with a peer that lacks TLS 1.3.`, default: DEFAULT_TLS_MIN_VERSION });
