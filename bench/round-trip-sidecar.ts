// node bench/round-trip-sidecar.ts [airlock sidecar flags]: the real sidecar whose ingress asks the
// control plane for every call, ticket or not (startSidecar's `ticketAdmission` seam, never a
// setting), so the bench can tell what admitting a call on its ticket saves the ingress.
import { sidecarConfig } from '@airlock/sidecar/config';
import { loadCommandConfig } from '../cli/src/args.ts';
import { serveSidecar } from '../cli/src/commands/sidecar.ts';

const config = loadCommandConfig(process.argv.slice(2), sidecarConfig, 'bench round-trip sidecar');
if (config === undefined) process.exit(0);
await serveSidecar(config, { ticketAdmission: false });
