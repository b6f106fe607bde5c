import { flushCompileCache } from 'node:module';
import { sidecarConfig, type SidecarConfig } from '@airlock/sidecar/config';
import { startSidecar, type StartSidecarOptions } from '@airlock/sidecar';
import { startIdleMemoryRelease } from '@airlock/sidecar/idle-memory-release';
import { createRootLogger } from '@airlock/common/logging';
import { loadCommandConfig } from '../args.ts';
import { untilSignal } from '../run-until-signal.ts';

const HELP = `Usage: airlock sidecar [--config FILE] [flags]

Runs the sidecar of one agent: the outbound proxy the agent uses as HTTP_PROXY, the inbound mTLS
listener for peers, and the metrics/health endpoint. Pass the join token in AIRLOCK_JOIN_TOKEN
rather than as a flag, so it does not show in the process list.`;

export async function runSidecar(argv: string[]): Promise<number> {
  const config = loadCommandConfig(argv, sidecarConfig, HELP);
  if (config === undefined) return 0;
  await serveSidecar(config);
  return 0;
}

/** A sidecar process until SIGINT or SIGTERM: `airlock sidecar`, and the bench's variants of it (through `opts`' seams). */
export async function serveSidecar(config: SidecarConfig, opts: StartSidecarOptions = {}): Promise<void> {
  const logger = opts.logger ?? createRootLogger({ process: 'sidecar', level: config.logLevel });
  const sidecar = await startSidecar(config, { ...opts, logger });
  // Persist the compile cache (cli/bin/airlock.js) now, not only at exit: a sidecar that is killed
  // still leaves its next start warm.
  flushCompileCache();
  // Process-wide, so here and not in startSidecar (tests run many sidecars in one process).
  const release = config.idleMemoryRelease === 0 ? undefined : startIdleMemoryRelease({ intervalMs: config.idleMemoryRelease, logger: logger.child({ component: 'memory' }) });
  await untilSignal();
  release?.stop();
  await sidecar.close();
}
