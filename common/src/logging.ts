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

/**
 * A request target (path and query) as a log line may carry it: the value of each query parameter
 * replaced (`?access_token=[redacted]`), a parameter without "=" replaced whole (`?s3cr3t` may be
 * the credential itself), and any fragment too. Parameter names stay, for investigations. The one
 * redaction for every line that logs a request's path.
 */
export function redactQuery(target: string): string {
  const hash = target.indexOf('#');
  const end = hash === -1 ? target.length : hash;
  const q = target.indexOf('?');
  if (q === -1 || q > end) return hash === -1 ? target : `${target.slice(0, hash)}#[redacted]`;
  const params = target
    .slice(q + 1, end)
    .split('&')
    .map((p) => {
      if (p === '') return p;
      const eq = p.indexOf('=');
      return eq === -1 ? '[redacted]' : `${p.slice(0, eq)}=[redacted]`;
    });
  return `${target.slice(0, q)}?${params.join('&')}${hash === -1 ? '' : '#[redacted]'}`;
}

/**
 * A writer of info lines whose field `key` is a value already serialized as JSON: the line is what
 * `logger.info({ [key]: JSON.parse(json) }, msg)` writes (level, time, bindings, the field, msg),
 * without serializing the value again. The audit chain serializes each decision event to hash it;
 * pino serializing it a second time for the line was ~10 % of a decision's CPU. It builds the line
 * from pino's exported `pino.symbols` (the level prefix, time function, bindings and line end it
 * caches per logger); a logger using what it does not reproduce (a mixin, hooks, a log formatter,
 * another message key, nestedKey, a stream that wants metadata) is given the plain `info` call.
 */
export function jsonFieldWriter(logger: Logger, key: string, msg: string): (json: string) => void {
  // msgPrefixSym is exported but missing from pino's types.
  const s = pino.symbols as typeof pino.symbols & { readonly msgPrefixSym?: symbol };
  const l = logger as unknown as Record<symbol, unknown>;
  const plain = (json: string): void => logger.info({ [key]: JSON.parse(json) as unknown }, msg);
  const formatters = l[s.formattersSym] as { log?: unknown } | undefined;
  const hooks = l[s.hooksSym] as { streamWrite?: unknown } | undefined;
  const stream = l[s.streamSym] as (DestinationStream & Record<symbol, unknown>) | undefined;
  if (
    l[s.mixinSym] || formatters?.log !== undefined || hooks?.streamWrite !== undefined || l[s.messageKeySym] !== 'msg' || l[s.nestedKeySym] ||
    s.msgPrefixSym === undefined || l[s.msgPrefixSym] || stream === undefined || stream[s.needsMetadataGsym] === true || typeof l[s.timeSym] !== 'function'
  ) {
    return plain;
  }
  const field = `,${JSON.stringify(key)}:`;
  const tail = `,"msg":${JSON.stringify(msg)}${String(l[s.endSym])}`;
  const info = logger.levels.values.info ?? 30;
  return (json) => {
    if (!logger.isLevelEnabled('info')) return;
    const lsCache = l[s.lsCacheSym] as Record<number, string>;
    const time = (l[s.timeSym] as () => string).call(logger);
    stream.write(`${lsCache[info] ?? ''}${time}${String(l[s.chindingsSym])}${field}${json}${tail}`);
  };
}
