import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

/** Field paths never written to logs, whatever component logs them. */
export const REDACTED_PATHS = [
  'token',
  'joinToken',
  'adminToken',
  'privateKey',
  'keyPem',
  'authorization',
  '*.token',
  '*.joinToken',
  '*.privateKey',
  '*.keyPem',
  'headers.authorization',
  'req.headers.authorization',
  'config.joinToken',
];

export interface LoggerOptions {
  /** e.g. "control-plane" or "sidecar". */
  readonly process: string;
  readonly level?: string;
  readonly bindings?: Record<string, string>;
  /** Defaults to stdout; tests pass a stream to read what was logged. */
  readonly destination?: DestinationStream;
}

/** One root logger per process: JSON, ISO time, secrets redacted. Modules take `child({ component })`. */
export function createRootLogger(o: LoggerOptions): Logger {
  return pino(
    {
      level: o.level ?? 'info',
      base: { process: o.process, pid: process.pid, ...o.bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    o.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
