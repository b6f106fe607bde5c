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

/**
 * Buffering of the default stdout destination. Unbuffered, every line (one audit line per decision)
 * was its own write(2) handed to the thread pool: under load those writes and their wake-ups cost
 * half the control plane's CPU samples. Lines are now written once MIN_WRITE_BYTES are pending, and
 * at most FLUSH_MS after they were logged, synchronously: a write in flight on the thread pool is
 * lost when the process exits (seen in a test), a synchronous one cannot be. What is still buffered
 * is written on exit (a handled SIGTERM, an uncaught error, process.exit()); only SIGKILL loses it.
 */
const LOG_MIN_WRITE_BYTES = 8192;
const LOG_FLUSH_MS = 50;

/** The default destination: stdout, buffered as above. */
function stdoutDestination(): DestinationStream {
  const stream = pino.destination({ dest: 1, sync: true, minLength: LOG_MIN_WRITE_BYTES, periodicFlush: LOG_FLUSH_MS });
  process.once('exit', () => {
    try {
      stream.flushSync();
    } catch {
      // stdout already closed: nothing left to write to
    }
  });
  return stream;
}

/**
 * pino's ISO time, formatted at most once per millisecond: with an audit line per decision,
 * `toISOString` on every line was a measurable share of a decision's cost.
 */
function isoTimeOncePerMs(): () => string {
  let lastMs = -1;
  let last = '';
  return () => {
    const now = Date.now();
    if (now !== lastMs) {
      lastMs = now;
      last = `,"time":"${new Date(now).toISOString()}"`;
    }
    return last;
  };
}

/** One root logger per process: JSON, ISO time, secrets redacted. Modules take `child({ component })`. */
export function createRootLogger(o: LoggerOptions): Logger {
  return pino(
    {
      level: o.level ?? 'info',
      base: { process: o.process, pid: process.pid, ...o.bindings },
      timestamp: isoTimeOncePerMs(),
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    o.destination ?? stdoutDestination(),
  );
}
