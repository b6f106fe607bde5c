import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { formatHostPort, parseHostPort } from '@airlock/common/config';
import { ConfigError, errorMessage } from '@airlock/common/errors';
import { KUBERNETES_AUDIENCE } from '../attestation/kubernetes-token.ts';
import { resourcesProblems, type Resources } from './quantity.ts';

/** What the webhook injects: the `injectionConfigFile` (the chart renders it into a ConfigMap), validated once. */
export interface InjectionSettings {
  readonly image: string;
  readonly imagePullPolicy: 'IfNotPresent' | 'Always' | 'Never';
  /** host:port of the control plane's gRPC endpoint as pods reach it (a Service name). */
  readonly controlPlane: string;
  readonly trustDomain: string;
  readonly tokenAudience: string;
  readonly tokenExpirationSeconds: number;
  readonly resources: Resources;
  readonly transparent: boolean;
  readonly proxyInitImage: string;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error';
}

const PULL_POLICIES = ['IfNotPresent', 'Always', 'Never'] as const;
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
const KEYS = ['image', 'imagePullPolicy', 'controlPlane', 'trustDomain', 'tokenAudience', 'tokenExpirationSeconds', 'resources', 'transparent', 'proxyInitImage', 'logLevel'] as const;
/** The kubelet refuses a projected token shorter than 10 minutes; longer than a day is not "short-lived". */
const MIN_TOKEN_SECONDS = 600;
const MAX_TOKEN_SECONDS = 86_400;
// An image reference: [registry[:port]/]path[:tag][@digest], no spaces or shell characters.
const IMAGE = /^[a-z0-9]+(?:[._:/-][a-zA-Z0-9]+)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;

/** Reads and checks the file; every problem is reported at once, with the file's path. */
export function loadInjectionSettings(path: string, trustDomain: string): InjectionSettings {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`injectionConfigFile: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`]);
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    throw new ConfigError([`${path}: ${errorMessage(err)}`]);
  }
  return parseInjectionSettings(raw, trustDomain, path);
}

export function parseInjectionSettings(raw: unknown, trustDomain: string, where = 'injectionConfigFile'): InjectionSettings {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError([`${where}: must hold a mapping of injection settings (${KEYS.join(', ')})`]);
  const o = raw as Record<string, unknown>;
  const problems: string[] = [];
  const bad = (key: string, what: string): void => void problems.push(`${where}: ${key}: ${what}`);
  for (const key of Object.keys(o)) {
    if (!(KEYS as readonly string[]).includes(key)) bad(key, `unknown setting (known: ${KEYS.join(', ')})`);
  }
  const str = (key: string, fallback?: string): string => {
    const v = o[key];
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'string' || v === '') {
      bad(key, v === undefined ? 'is required' : 'must be a non-empty string');
      return '';
    }
    return v;
  };
  const oneOf = <T extends string>(key: string, values: readonly T[], fallback: T): T => {
    const v = str(key, fallback);
    if (v !== '' && !(values as readonly string[]).includes(v)) bad(key, `expected one of ${values.join(', ')}, got "${v}"`);
    return v as T;
  };

  const image = str('image');
  const imagePullPolicy = oneOf('imagePullPolicy', PULL_POLICIES, 'IfNotPresent');
  const logLevel = oneOf('logLevel', LOG_LEVELS, 'info');
  if (image !== '' && !IMAGE.test(image)) bad('image', `"${image}" is not an image reference (registry/name:tag or @sha256:digest)`);
  const proxyInitImage = str('proxyInitImage', image);
  if (proxyInitImage !== '' && proxyInitImage !== image && !IMAGE.test(proxyInitImage)) bad('proxyInitImage', `"${proxyInitImage}" is not an image reference`);
  let controlPlane = str('controlPlane');
  if (controlPlane !== '') {
    try {
      const a = parseHostPort(controlPlane);
      if (a.port === 0) throw new Error('the port must not be 0');
      controlPlane = formatHostPort(a);
    } catch (err) {
      bad('controlPlane', errorMessage(err));
    }
  }
  const td = str('trustDomain', trustDomain);
  // The sidecar checks the control plane's SPIFFE ID in its trust domain: another one never connects.
  if (td !== '' && td !== trustDomain) bad('trustDomain', `"${td}" is not the control plane's trust domain "${trustDomain}"`);
  const tokenAudience = str('tokenAudience', KUBERNETES_AUDIENCE);
  if (tokenAudience !== '' && tokenAudience !== KUBERNETES_AUDIENCE) bad('tokenAudience', `the control plane accepts tokens for the audience "${KUBERNETES_AUDIENCE}" only, got "${tokenAudience}"`);
  const seconds = o.tokenExpirationSeconds ?? MIN_TOKEN_SECONDS;
  if (typeof seconds !== 'number' || !Number.isInteger(seconds) || seconds < MIN_TOKEN_SECONDS || seconds > MAX_TOKEN_SECONDS) {
    bad('tokenExpirationSeconds', `must be a whole number of seconds from ${MIN_TOKEN_SECONDS} to ${MAX_TOKEN_SECONDS}, got ${JSON.stringify(seconds)}`);
  }
  const transparent = o.transparent ?? false;
  if (typeof transparent !== 'boolean') bad('transparent', 'must be true or false');
  const resources = readResources(o.resources, (what) => bad('resources', what));
  problems.push(...resourcesProblems(resources, (kind, name) => `${where}: resources.${kind}.${name}`));

  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze({
    image,
    imagePullPolicy,
    controlPlane,
    trustDomain: td,
    tokenAudience,
    tokenExpirationSeconds: seconds as number,
    resources,
    transparent: transparent as boolean,
    proxyInitImage,
    logLevel,
  });
}

function readResources(raw: unknown, bad: (what: string) => void): Resources {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    bad('must be a mapping {requests: {cpu, memory}, limits: {cpu, memory}}');
    return {};
  }
  const out: Record<string, Record<string, string>> = {};
  for (const [kind, list] of Object.entries(raw as Record<string, unknown>)) {
    if (kind !== 'requests' && kind !== 'limits') {
      bad(`unknown key "${kind}" (known: requests, limits)`);
      continue;
    }
    if (list === null || list === undefined) continue;
    if (typeof list !== 'object' || Array.isArray(list)) {
      bad(`${kind}: must be a mapping {cpu, memory}`);
      continue;
    }
    const entries: Record<string, string> = {};
    for (const [name, q] of Object.entries(list as Record<string, unknown>)) {
      if (name !== 'cpu' && name !== 'memory') bad(`${kind}: unknown resource "${name}" (known: cpu, memory)`);
      else if (typeof q !== 'string' && typeof q !== 'number') bad(`${kind}.${name}: must be a quantity such as 100m or 64Mi`);
      else entries[name] = String(q);
    }
    out[kind] = entries;
  }
  return out;
}
