import { ConfigError } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { join } from 'node:path';
import type { Registry } from 'prom-client';
import type { ControlPlaneConfig } from '../config/config.ts';
import { httpTransport } from './http-transport.ts';
import type { SpoolFullPolicy } from './spool.ts';
import { createAuditSinkMetrics, SpooledAuditSink, type AuditSink, type AuditTransport } from './spooled-sink.ts';
import { syslogTransport } from './syslog-transport.ts';

type SinkConfig = Pick<ControlPlaneConfig, 'dataDir' | 'auditHttpUrl' | 'auditHttpTokenFile' | 'auditHttpCaFile' | 'auditSyslogAddress' | 'auditSyslogCaFile' | 'auditSyslogServerName' | 'auditSyslogCertFile' | 'auditSyslogKeyFile' | 'auditSyslogResendEvents' | 'auditSpoolMaxBytes' | 'auditSpoolFull'>;

/** The configured audit sinks (HTTP, syslog), each its transport behind its own spool (`<dataDir>/audit-spool/<sink>`). */
export function auditSinks(config: SinkConfig, registry: Registry, log: Logger): AuditSink[] {
  const transports: AuditTransport[] = [];
  if (config.auditHttpUrl !== undefined) {
    transports.push(httpTransport({
      url: config.auditHttpUrl,
      ...(config.auditHttpTokenFile === undefined ? {} : { tokenFile: config.auditHttpTokenFile }),
      ...(config.auditHttpCaFile === undefined ? {} : { caFile: config.auditHttpCaFile }),
    }));
  }
  if (config.auditSyslogAddress !== undefined) {
    if ((config.auditSyslogCertFile === undefined) !== (config.auditSyslogKeyFile === undefined)) throw new ConfigError(['auditSyslogCertFile and auditSyslogKeyFile go together (a client certificate and its key)']);
    transports.push(syslogTransport({
      ...config.auditSyslogAddress,
      resendEvents: config.auditSyslogResendEvents,
      ...(config.auditSyslogCaFile === undefined ? {} : { caFile: config.auditSyslogCaFile }),
      ...(config.auditSyslogServerName === undefined ? {} : { serverName: config.auditSyslogServerName }),
      ...(config.auditSyslogCertFile === undefined ? {} : { certFile: config.auditSyslogCertFile }),
      ...(config.auditSyslogKeyFile === undefined ? {} : { keyFile: config.auditSyslogKeyFile }),
    }));
  }
  if (transports.length === 0) return [];
  const metrics = createAuditSinkMetrics(registry);
  return transports.map((transport) => new SpooledAuditSink({
    transport,
    spoolDir: join(config.dataDir, 'audit-spool', transport.name),
    spoolMaxBytes: config.auditSpoolMaxBytes,
    // oneOf checked it is one of the two.
    full: config.auditSpoolFull as SpoolFullPolicy,
    metrics,
    log,
  }));
}
