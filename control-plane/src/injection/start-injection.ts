import type { Registry } from 'prom-client';
import { ConfigError } from '@airlock/common/errors';
import type { LimitRefusal } from '@airlock/common/listener-limits';
import type { Logger } from '@airlock/common/logging';
import type { ControlPlaneConfig } from '../config/config.ts';
import { loadInjectionSettings, type InjectionSettings } from './injection-settings.ts';
import { createInjectionMetrics } from './metrics.ts';
import type { TlsMinVersion } from '@airlock/common/config';
import type { ServingCertificates } from '../api/serving-https.ts';
import { startInjectionServer } from './webhook-server.ts';

/**
 * The webhook's settings, checked at start before any state is made (a typo fails fast), or
 * undefined when injection is off. injectionListen and injectionConfigFile go together.
 */
export function injectionSettings(config: Pick<ControlPlaneConfig, 'injectionListen' | 'injectionConfigFile' | 'trustDomain'>): InjectionSettings | undefined {
  if (config.injectionListen === undefined && config.injectionConfigFile === undefined) return undefined;
  if (config.injectionListen === undefined || config.injectionConfigFile === undefined) {
    throw new ConfigError(['injectionListen and injectionConfigFile go together (the sidecar injection webhook): give both or neither']);
  }
  return loadInjectionSettings(config.injectionConfigFile, config.trustDomain);
}

/** Starts the webhook when there are settings; returns its bound port and how to stop it. */
export async function startInjection(o: {
  config: Pick<ControlPlaneConfig, 'injectionListen'>;
  settings: InjectionSettings | undefined;
  serving: ServingCertificates;
  tlsMinVersion: TlsMinVersion;
  trustBundlePem: () => string;
  registry: Registry;
  /** Each connection the webhook's limits cut. */
  refused: (reason: LimitRefusal) => void;
  logger: Logger;
}): Promise<{ port: number; close: () => Promise<void> } | undefined> {
  if (o.settings === undefined || o.config.injectionListen === undefined) return undefined;
  const running = await startInjectionServer({
    address: o.config.injectionListen,
    serving: o.serving,
    tlsMinVersion: o.tlsMinVersion,
    settings: o.settings,
    trustBundlePem: o.trustBundlePem,
    metrics: createInjectionMetrics(o.registry),
    refused: o.refused,
    logger: o.logger,
  });
  return { port: running.port, close: () => running.close() };
}
