import { controlPlaneConfig } from '@airlock/control-plane/config';
import { startControlPlane } from '@airlock/control-plane';
import { loadCommandConfig } from '../args.ts';
import { untilSignal } from '../run-until-signal.ts';

const HELP = `Usage: airlock control-plane [--config FILE] [flags]

Runs the control plane: the root CA and SVID issuance, join-token attestation, the policy engine and
Authorize over gRPC/mTLS, and the HTTP endpoint for metrics, health and the admin API.`;

export async function runControlPlane(argv: string[]): Promise<number> {
  const config = loadCommandConfig(argv, controlPlaneConfig, HELP);
  if (config === undefined) return 0;
  const cp = await startControlPlane(config);
  await untilSignal();
  await cp.close();
  return 0;
}
