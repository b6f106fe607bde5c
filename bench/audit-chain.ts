// node bench/audit-chain.ts: what the audit trail's hash chain costs per decision, in-process on one
// core. The real Authorizer decides the same mesh call (a two-segment policy, a registered agent)
// with its events recorded three ways, each written by the control plane's pino logger to a sink
// that drops the bytes (the disk is not what is measured):
//   none    NO_AUDIT: the decision alone;
//   line    the event written as a log line, unchained (what an audit line cost before the chain);
//   chain   the AuditTrail: envelope (event id, time, seq), RFC 8785 canonical JSON, SHA-256, then the line;
//   ticket  the chain, and the ticket the allowed mesh call gets (issue 11: HMAC-SHA256, base64url);
//   message the same, 512 checks per AuthorizeStream message decoded and their answers encoded (protobuf);
// plus one signed checkpoint (RSA 2048, the serving key), amortized over auditCheckpointEvery (1000).
// Rounds alternate the modes; the median round per mode is kept, in CPU time. Prints one JSON line.
import { loadavg, tmpdir } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createRootLogger } from '@airlock/common/logging';
import { parseSpiffeId } from '@airlock/common/spiffe';
import { createRegistry } from '@airlock/common/telemetry';
import { AuthorizeRequest, AuthorizeStreamRequest, AuthorizeStreamResponse, Direction } from '@airlock/proto/authorization/v1';
import { AuditTrail } from '../control-plane/src/audit/audit-trail.ts';
import { NO_AUDIT, type AuditLog } from '../control-plane/src/audit/event.ts';
import { Authorizer } from '../control-plane/src/authz/authorize.ts';
import { CertificateAuthority } from '../control-plane/src/ca/ca.ts';
import { controlPlaneSpiffeId } from '../control-plane/src/main.ts';
import { createControlPlaneMetrics } from '../control-plane/src/monitoring/metrics.ts';
import { PolicyEngine } from '../control-plane/src/policy/engine.ts';
import { parsePolicyText } from '../control-plane/src/policy/load.ts';
import { TicketIssuer } from '../control-plane/src/authz/tickets/ticket-issuer.ts';
import { TicketKeys } from '../control-plane/src/authz/tickets/ticket-keys.ts';
import { SqliteStore } from '../control-plane/src/store/sqlite-store.ts';
import type { AgentRecord } from '../control-plane/src/store/store.ts';

const TD = 'bench.test';
const PLANNER = `spiffe://${TD}/ns/agents/sa/planner`;
const RESEARCHER = `spiffe://${TD}/ns/agents/sa/researcher`;
const PER_ROUND = 20_000;
const ROUNDS = 9;
const CHECKPOINT_EVERY = 1000;

const dir = mkdtempSync(join(tmpdir(), 'airlock-bench-audit-'));
const ca = CertificateAuthority.loadOrCreate(dir, TD);
const serving = ca.issueServingCertificate(controlPlaneSpiffeId(TD), 3_600_000);
const engine = new PolicyEngine(
  parsePolicyText(
    ['planner', 'researcher'].map((a) => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: ${a}s }\nspec: { selector: { namespace: agents, serviceAccounts: [${a}] } }\n`).join('---\n') +
      `---\napiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: planners-to-researchers }\nspec:\n  from: { segments: [planners] }\n  to: { segments: [researchers] }\n  rules: [ { methods: [GET, POST], paths: ["/v1/*"] } ]\n  action: allow\n`,
    'bench.yaml',
  ),
  TD,
  1,
);
const agents = new Map<string, AgentRecord>([[RESEARCHER, { spiffeId: RESEARCHER, inboundAddress: '127.0.0.1:9', updatedAt: 1 }]]);
// The control plane's own logger, into a sink that keeps nothing.
const root = createRootLogger({ process: 'control-plane', level: 'error', destination: { write: () => undefined } });
const lines = root.child({ component: 'audit' }, { level: 'info', redact: { paths: [] } });
const unchained: AuditLog = {
  decision: (r) => lines.info({ audit: { kind: 'decision', ...r } }, 'authorization decision'),
  refusal: (r) => lines.info({ audit: { kind: 'refusal', ...r } }, 'request refused'),
  admin: (r) => lines.info({ audit: { kind: 'admin', ...r } }, 'admin action'),
  anomaly: (r) => lines.info({ audit: { kind: 'anomaly', ...r } }, 'anomaly'),
  accepting: () => true,
};
// Checkpoints are measured on their own below: none here (every 10^6 events). One signer object, as
// main.ts holds (a new one per checkpoint would parse the key again each time).
const signer = { keyPem: serving.keyPem, chainPem: serving.chainPem };
const trail = new AuditTrail({ logger: lines, log: root, replica: 'bench', signer: () => signer, checkpointEvery: 1_000_000, checkpointIntervalMs: 3_600_000 });
const ticketStore = new SqliteStore(':memory:');
const tickets = new TicketIssuer(await TicketKeys.open({ store: ticketStore }));
const authorizers: Record<'none' | 'line' | 'chain' | 'ticket', Authorizer> = {
  none: authorizerWith(NO_AUDIT),
  line: authorizerWith(unchained),
  chain: authorizerWith(trail),
  ticket: authorizerWith(trail, tickets),
};
function authorizerWith(audit: AuditLog, issuer?: TicketIssuer): Authorizer {
  return new Authorizer({ trustDomain: TD, decisions: () => ({ engine, agents, revoked: new Set<string>(), quarantined: new Map() }), metrics: createControlPlaneMetrics(createRegistry('bench')), audit, ...(issuer === undefined ? {} : { tickets: issuer }) });
}
const caller = parseSpiffeId(PLANNER);
const request = AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: PLANNER, destinationHost: 'researcher.agents', destinationPort: 8080, method: 'GET', path: '/v1/search?q=x' });

// CPU time of this process (user + system), not wall time: the machine is shared, and a round
// during which another process held the core would count that process's time.
function cpuUs(since?: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return u.user + u.system;
}
function round(a: Authorizer): number {
  const start = process.cpuUsage();
  for (let i = 0; i < PER_ROUND; i++) a.authorize(caller, request);
  return cpuUs(start) / PER_ROUND;
}
// One AuthorizeStream message of a full batch as the control plane handles it: the request
// decoded, each check decided (chain and ticket), the answer encoded (gRPC's framing, HTTP/2 and
// TLS not included: per message, they are amortized over the batch).
const BATCH = 512;
const message = Buffer.from(AuthorizeStreamRequest.encode({ checks: Array.from({ length: BATCH }, (_, id) => ({ id, request })) }).finish());
function messageRound(a: Authorizer): number {
  const start = process.cpuUsage();
  for (let m = 0; m < PER_ROUND / BATCH; m++) {
    const batch = AuthorizeStreamRequest.decode(message);
    AuthorizeStreamResponse.encode({ results: batch.checks.map((c) => ({ id: c.id, decision: a.authorize(caller, c.request ?? request), refusal: undefined })) }).finish();
  }
  return cpuUs(start) / (Math.floor(PER_ROUND / BATCH) * BATCH);
}
const rounds: Record<string, () => number> = {
  ...Object.fromEntries(Object.entries(authorizers).map(([mode, a]) => [mode, () => round(a)])),
  message: () => messageRound(authorizers.ticket),
};
// JIT warm-up of every path.
for (const r of Object.values(rounds)) for (let i = 0; i < 3; i++) r();
const samples: Record<string, number[]> = { none: [], line: [], chain: [], ticket: [], message: [] };
for (let r = 0; r < ROUNDS; r++) for (const [mode, run] of Object.entries(rounds)) samples[mode]?.push(run());
const median = (xs: readonly number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] ?? NaN;

const signStart = process.cpuUsage();
const SIGNS = 50;
// Signed on the thread pool as the trail does (process CPU time counts every thread).
for (let i = 0; i < SIGNS; i++) {
  trail.checkpoint();
  await trail.settled();
}
const checkpointUs = cpuUs(signStart) / SIGNS;
await trail.close();
await ticketStore.close();
rmSync(dir, { recursive: true, force: true });

const none = median(samples.none ?? []);
const line = median(samples.line ?? []);
const chain = median(samples.chain ?? []);
const ticket = median(samples.ticket ?? []);
const inMessage = median(samples.message ?? []);
console.log(
  JSON.stringify({
    decisionUs: none,
    withLineUs: line,
    withChainUs: chain,
    chainOverLineUs: chain - line,
    withTicketUs: ticket,
    ticketOverChainUs: ticket - chain,
    decisionsPerSecondWithTicket: 1e6 / (ticket + checkpointUs / CHECKPOINT_EVERY),
    inMessageUs: inMessage,
    protobufPerCheckUs: inMessage - ticket,
    decisionsPerSecondInMessages: 1e6 / (inMessage + checkpointUs / CHECKPOINT_EVERY),
    checkpointUs,
    checkpointPerDecisionUs: checkpointUs / CHECKPOINT_EVERY,
    decisionsPerSecondWithChain: 1e6 / (chain + checkpointUs / CHECKPOINT_EVERY),
    load: loadavg().map((l) => Number(l.toFixed(2))),
  }),
);
