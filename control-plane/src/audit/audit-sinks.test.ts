import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@airlock/common/errors';
import { createRootLogger } from '@airlock/common/logging';
import { createRegistry } from '@airlock/common/telemetry';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { controlPlaneConfig } from '../config/config.ts';
import { auditSinks } from './audit-sinks.ts';

const log = createRootLogger({ process: 't', level: 'silent' });

describe('the audit sinks of a config', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'airlock-sinks-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const config = (flags: Record<string, string>): ReturnType<typeof controlPlaneConfig.load> => controlPlaneConfig.load({ flags: { dataDir: dir, ...flags } });

  it('are none by default, and HTTP and syslog together share one set of metrics, each with its own spool', async () => {
    expect(auditSinks(config({}), createRegistry('t'), log)).toEqual([]);
    const registry = createRegistry('t');
    // Port 9 on loopback: nothing listens; the events stay spooled.
    const sinks = auditSinks(config({ auditHttpUrl: 'http://127.0.0.1:9/bulk', auditSyslogAddress: '127.0.0.1:9' }), registry, log);
    expect(sinks).toHaveLength(2);
    for (const s of sinks) s.submit('{"kind":"decision"}');
    for (const s of sinks) await s.close();
    const spooled = (await registry.getSingleMetric('airlock_audit_spool_bytes')?.get())?.values.map((v) => v.labels.sink).sort();
    expect(spooled).toEqual(['http', 'syslog']);
  });

  it('refuse a syslog client certificate without its key, and the reverse', () => {
    for (const flags of [{ auditSyslogCertFile: '/c.pem' }, { auditSyslogKeyFile: '/k.pem' }] as Record<string, string>[]) {
      expect(() => auditSinks(config({ auditSyslogAddress: 'siem.example:6514', ...flags }), createRegistry('t'), log)).toThrow(ConfigError);
    }
  });

  it('refuse a syslog address without a port (0) or not host:port', () => {
    expect(() => config({ auditSyslogAddress: 'siem.example:0' })).toThrow(/auditSyslogAddress needs a port/);
    expect(() => config({ auditSyslogAddress: 'tls://siem.example:6514' })).toThrow(/host:port/);
    expect(config({ auditSyslogAddress: '[::1]:6514' }).auditSyslogAddress).toEqual({ host: '::1', port: 6514 });
  });
});
