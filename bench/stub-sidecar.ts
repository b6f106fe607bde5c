// node bench/stub-sidecar.ts <upstream host:port> [airlock sidecar flags]: the real sidecar with
// authorization stubbed in-process (through startSidecar's `authorizer` seam, never a setting), so
// the bench can tell the proxy's own cost from the authorization transport's. Every call is allowed;
// outbound calls go to the given upstream (the peer sidecar's inbound listener) as spiffe://…/sa/researcher.
import { sidecarConfig } from '@airlock/sidecar/config';
import type { Authorizer, Decision } from '../sidecar/src/authz/authorizer.ts';
import { loadCommandConfig } from '../cli/src/args.ts';
import { serveSidecar } from '../cli/src/commands/sidecar.ts';

const [upstreamAddress = '', ...argv] = process.argv.slice(2);
const config = loadCommandConfig(argv, sidecarConfig, 'bench stub sidecar');
if (config === undefined) process.exit(0);
const upstream = upstreamAddress === '' ? undefined : { address: upstreamAddress, spiffeId: `spiffe://${config.trustDomain}/ns/bench/sa/researcher` };
const allowed: Decision = { allowed: true, decisionId: 'stub', reason: 'stubbed', policy: 'stub', policyVersion: 0, rule: '', upstream, dryRunDeny: false, allowedTools: [] };
const stub: Authorizer = {
  authorize: () => Promise.resolve(allowed),
  close: () => undefined,
};
await serveSidecar(config, { authorizer: stub });
