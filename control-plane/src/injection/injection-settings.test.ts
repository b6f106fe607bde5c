import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '@airlock/common/errors';
import { injectionSettings } from './start-injection.ts';
import { loadInjectionSettings, parseInjectionSettings } from './injection-settings.ts';

const TD = 'airlock.test';
const minimal = { image: 'ghcr.io/airlock-dev/airlock:0.1.0', controlPlane: 'airlock-control-plane.airlock-system.svc:15012' };

function problems(raw: unknown): string[] {
  try {
    parseInjectionSettings(raw, TD, 'inj.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('injection settings', () => {
  it('fills defaults: the control plane trust domain, audience airlock, 600 s tokens, IfNotPresent, the same image for the init container', () => {
    expect(parseInjectionSettings(minimal, TD)).toEqual({
      ...minimal,
      imagePullPolicy: 'IfNotPresent',
      trustDomain: TD,
      tokenAudience: 'airlock',
      tokenExpirationSeconds: 600,
      resources: {},
      transparent: false,
      proxyInitImage: minimal.image,
      logLevel: 'info',
    });
  });

  it('reads a YAML file as the chart renders it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-inj-'));
    const path = join(dir, 'config.yaml');
    writeFileSync(path, `image: ${minimal.image}\nimagePullPolicy: Always\ncontrolPlane: ${minimal.controlPlane}\ntrustDomain: ${TD}\ntokenAudience: airlock\ntokenExpirationSeconds: 3600\nresources:\n  requests: {cpu: 50m, memory: 64Mi}\n  limits: {cpu: "1", memory: 256Mi}\ntransparent: true\nproxyInitImage: ghcr.io/airlock-dev/airlock:0.1.0\nlogLevel: debug\n`);
    expect(loadInjectionSettings(path, TD)).toMatchObject({ imagePullPolicy: 'Always', tokenExpirationSeconds: 3600, transparent: true, logLevel: 'debug', resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '1', memory: '256Mi' } } });
  });

  it('reports every problem at once: unknown keys, wrong types, bad quantities, another trust domain or audience, too long tokens', () => {
    expect(
      problems({
        image: 'not an image!',
        controlPlane: 'no-port',
        imagePull: 'Always',
        imagePullPolicy: 'Sometimes',
        trustDomain: 'other.test',
        tokenAudience: 'kubernetes',
        tokenExpirationSeconds: 60,
        transparent: 'yes',
        resources: { requests: { cpu: 'lots', gpu: '1' }, limit: {} },
      }),
    ).toEqual([
      'inj.yaml: imagePull: unknown setting (known: image, imagePullPolicy, controlPlane, trustDomain, tokenAudience, tokenExpirationSeconds, resources, transparent, proxyInitImage, logLevel)',
      'inj.yaml: imagePullPolicy: expected one of IfNotPresent, Always, Never, got "Sometimes"',
      'inj.yaml: image: "not an image!" is not an image reference (registry/name:tag or @sha256:digest)',
      'inj.yaml: controlPlane: expected host:port (e.g. 127.0.0.1:15001), got "no-port"',
      'inj.yaml: trustDomain: "other.test" is not the control plane\'s trust domain "airlock.test"',
      'inj.yaml: tokenAudience: the control plane accepts tokens for the audience "airlock" only, got "kubernetes"',
      'inj.yaml: tokenExpirationSeconds: must be a whole number of seconds from 600 to 86400, got 60',
      'inj.yaml: transparent: must be true or false',
      'inj.yaml: resources: requests: unknown resource "gpu" (known: cpu, memory)',
      'inj.yaml: resources: unknown key "limit" (known: requests, limits)',
      'inj.yaml: resources.requests.cpu: "lots" is not a Kubernetes quantity (e.g. 100m, 0.5, 64Mi, 1Gi)',
    ]);
    expect(problems({})).toEqual(['inj.yaml: image: is required', 'inj.yaml: controlPlane: is required']);
    expect(problems(['image'])).toEqual(['inj.yaml: must hold a mapping of injection settings (image, imagePullPolicy, controlPlane, trustDomain, tokenAudience, tokenExpirationSeconds, resources, transparent, proxyInitImage, logLevel)']);
  });

  it('needs injectionListen and injectionConfigFile together', () => {
    const listen = { host: '127.0.0.1', port: 15017 };
    expect(injectionSettings({ trustDomain: TD, injectionListen: undefined, injectionConfigFile: undefined })).toBeUndefined();
    expect(() => injectionSettings({ trustDomain: TD, injectionListen: listen, injectionConfigFile: undefined })).toThrow(/go together/);
    expect(() => injectionSettings({ trustDomain: TD, injectionListen: undefined, injectionConfigFile: '/x.yaml' })).toThrow(/go together/);
    expect(() => injectionSettings({ trustDomain: TD, injectionListen: listen, injectionConfigFile: '/nonexistent/x.yaml' })).toThrow(/cannot read \/nonexistent\/x.yaml: ENOENT/);
  });
});
