// node bench/round-trip-sidecar.ts [airlock sidecar flags]: the real sidecar whose ingress asks the
// control plane for every call, ticket or not (startSidecar's `ticketAdmission` seam, never a
// setting), so the bench can tell what admitting a call on its ticket saves the ingress.
import { sidecarConfig } from '@airlock/sidecar/config';
import { startSidecar } from '@airlock/sidecar';
import { loadCommandConfig } from '../cli/src/args.ts';
import { untilSignal } from '../cli/src/run-until-signal.ts';

const config = loadCommandConfig(process.argv.slice(2), sidecarConfig, 'bench round-trip sidecar');
if (config === undefined) process.exit(0);
const sidecar = await startSidecar(config, { ticketAdmission: false });
await untilSignal();
await sidecar.close();
