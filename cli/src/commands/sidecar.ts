import { flushCompileCache } from 'node:module';
import { sidecarConfig } from '@airlock/sidecar/config';
import { startSidecar } from '@airlock/sidecar';
import { loadCommandConfig } from '../args.ts';
import { untilSignal } from '../run-until-signal.ts';

const HELP = `Usage: airlock sidecar [--config FILE] [flags]

Runs the sidecar of one agent: the outbound proxy the agent uses as HTTP_PROXY, the inbound mTLS
listener for peers, and the metrics/health endpoint. Pass the join token in AIRLOCK_JOIN_TOKEN
rather than as a flag, so it does not show in the process list.`;

export async function runSidecar(argv: string[]): Promise<number> {
  const config = loadCommandConfig(argv, sidecarConfig, HELP);
  if (config === undefined) return 0;
  const sidecar = await startSidecar(config);
  // Persist the compile cache (cli/bin/airlock.js) now, not only at exit: a sidecar that is killed
  // still leaves its next start warm.
  flushCompileCache();
  await untilSignal();
  await sidecar.close();
  return 0;
}
