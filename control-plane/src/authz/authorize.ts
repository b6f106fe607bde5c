import { randomUUID } from 'node:crypto';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import { redactQuery } from '@airlock/common/logging';
import { MAX_AUTHZ_HEADER_BYTES, MAX_AUTHZ_HEADERS } from '@airlock/common/headers';
import { MAX_MCP_ARGUMENT_BYTES, parseArgumentsJson } from '@airlock/common/mcp-arguments';
import { parseSpiffeId, type SpiffeId } from '@airlock/common/spiffe';
import { AuthorizeResponse, Direction, TlsMode, Verdict, type AuthorizeRequest } from '@airlock/proto/authorization/v1';
import type { AuditLog, AuditMcp, AuditRequest } from '../audit/event.ts';
import { checkListedToolPins, DEFAULT_TOOL_CHANGE_ACTION, serverOf, type ToolPins } from '../mcp-pins/tool-pins.ts';
import { DecisionCounts } from '../monitoring/decision-counts.ts';
import type { ControlPlaneMetrics } from '../monitoring/metrics.ts';
import { headerInput, type Destination, type McpInput } from '../policy/engine.ts';
import { askAgain } from './ask-again.ts';
import { decide } from './decide.ts';
import { RateLimiter } from './rate-limits/rate-limits.ts';
import type { Baselines } from '../baselines/baselines.ts';
import type { DecisionSnapshot } from './decision-state.ts';
import { agentDestination, destinationOfHost } from './registry.ts';
import { checkSecretFindings } from './secrets.ts';
import { addressesRequired, checkDestinationAddresses } from '../threat-feeds/threat-decision.ts';
import type { TicketIssuer } from './tickets/ticket-issuer.ts';
import { argumentsDigest } from '@airlock/common/ticket';
import { bindingOf, type ApprovalOutcome, type Approvals } from './approvals/approvals.ts';
import { applyApproval, approvalCallOf } from './approvals/held-decision.ts';
import { mcpBodyRequired, needsMcpBody } from './mcp-body.ts';

export interface AuthorizerDeps {
  readonly trustDomain: string;
  /** The state decisions read, taken once per call: a change (policy, agent, revocation) applies to the very next one. */
  readonly decisions: () => DecisionSnapshot;
  readonly metrics: ControlPlaneMetrics;
  /** The audit trail: one event per decision or refusal. */
  readonly audit: AuditLog;
  /** Issues the ticket of an allowed mesh call (README "How a call flows"); none without it. */
  readonly tickets?: TicketIssuer;
  /** Pins the tools of tools/list answers (README "Tool pinning"); none without it. */
  readonly toolPins?: ToolPins;
  /** Calls held for a human approval (rules with `approve: required`); without it such calls are denied. */
  readonly approvals?: Approvals;
  /** This replica's RateLimit buckets; its own when not given. */
  readonly rateLimiter?: RateLimiter;
  /** Behaviour baselines (README "Behaviour baselines"); none without it. */
  readonly baselines?: Baselines;
}

type DirectionName = 'outbound' | 'inbound';

interface DecisionMetrics {
  readonly duration: { observe(seconds: number): void };
}

const TLS_MODES = { inspect: TlsMode.TLS_MODE_INSPECT, originate: TlsMode.TLS_MODE_ORIGINATE } as const;

/** More listed tools than this in one tools/list filter is refused: the check is bounded. */
const MAX_LISTED_TOOLS = 1000;

/** Arguments no rule looks at (no policy has argument conditions): not parsed. */
const NOT_PARSED = { unreadable: 'not parsed: no rule looks at arguments' } as const;

/**
 * The MCP part of a request: a message, why there is none though there should be, or nothing.
 * The arguments of a `tools/call` are parsed only when some rule looks at them.
 */
function mcpOf(req: AuthorizeRequest, usesArguments: boolean): McpInput | undefined {
  if (req.mcpUnreadable !== '') return { unreadable: req.mcpUnreadable };
  if (req.mcpMethod === 'tools/call') {
    if (!usesArguments) return { method: req.mcpMethod, tool: req.mcpTool, arguments: NOT_PARSED };
    if (req.mcpArgumentsUnreadable !== '') return { method: req.mcpMethod, tool: req.mcpTool, arguments: { unreadable: req.mcpArgumentsUnreadable } };
    // A sidecar that sent no arguments (an older one) has them judged as unreadable: fail closed.
    return { method: req.mcpMethod, tool: req.mcpTool, arguments: req.mcpArguments === '' ? { unreadable: 'the sidecar sent no arguments' } : parseArgumentsJson(req.mcpArguments) };
  }
  if (req.mcpMethod !== '') return { method: req.mcpMethod, tool: '' };
  return undefined;
}

/** The sidecar's bounds on headers, held here too: a request over them is refused, not judged. */
function checkHeaderBounds(req: AuthorizeRequest): void {
  if (req.headers.length > MAX_AUTHZ_HEADERS) throw new AirlockError(ErrorCode.BadRequest, `more than ${MAX_AUTHZ_HEADERS} headers`);
  let bytes = 0;
  for (const h of req.headers) bytes += Buffer.byteLength(h.name) + Buffer.byteLength(h.value);
  if (bytes > MAX_AUTHZ_HEADER_BYTES) throw new AirlockError(ErrorCode.BadRequest, `more than ${MAX_AUTHZ_HEADER_BYTES} bytes of headers`);
  // The sidecar's bound on arguments, held here too (depth and count are checked when they are parsed).
  if (req.mcpArguments.length > MAX_MCP_ARGUMENT_BYTES) throw new AirlockError(ErrorCode.BadRequest, `more than ${MAX_MCP_ARGUMENT_BYTES} bytes of tool arguments`);
}

/**
 * The Authorize decision, free of gRPC: the caller's verified identity and the request in, a
 * response or an AirlockError out. Every outcome (decision or refusal) is audited and counted.
 */
export class Authorizer {
  readonly #d: AuthorizerDeps;
  /** Label children bound once: a labelled inc/observe hashes its label object on every call. */
  readonly #counted: Record<DirectionName, DecisionMetrics>;
  readonly #limiter: RateLimiter;
  readonly #decisionCounts: DecisionCounts;

  constructor(deps: AuthorizerDeps) {
    this.#d = deps;
    this.#limiter = deps.rateLimiter ?? new RateLimiter(deps.metrics);
    this.#decisionCounts = new DecisionCounts(deps.metrics);
    const bind = (direction: DirectionName): DecisionMetrics => ({
      duration: deps.metrics.decisionDuration.labels(direction),
    });
    this.#counted = { outbound: bind('outbound'), inbound: bind('inbound') };
  }

  /**
   * A check with approval_id: the held call's second ask. Waits (asynchronously) for the approval
   * of this exact call from this source, then decides it again as authorize does; any other case
   * is decided at once (refused, or denied as approval_unknown).
   */
  async authorizeHeld(caller: SpiffeId | AirlockError, req: AuthorizeRequest): Promise<AuthorizeResponse> {
    const approvals = this.#d.approvals;
    if (caller instanceof AirlockError || approvals === undefined || req.direction !== Direction.DIRECTION_OUTBOUND || req.sourceSpiffeId !== caller.uri || req.destinationHost === '') {
      return this.authorize(caller, req, { state: 'unknown', why: 'no approval can be waited for here' });
    }
    const destination = destinationOfHost(this.#d.decisions().agents, this.#d.trustDomain, req.destinationHost, false).destination;
    const call = approvalCallOf(req, caller, destination);
    const held = typeof call === 'string' ? ({ state: 'unknown', why: call } as const) : await approvals.wait(req.approvalId, caller.uri, bindingOf(call));
    return this.authorize(caller, req, held);
  }

  /**
   * `caller` is the verified client identity, or why there is none (refused as unauthenticated).
   * `held`: how the wait of a held call (req.approvalId) ended (authorizeHeld).
   */
  authorize(caller: SpiffeId | AirlockError, req: AuthorizeRequest, held?: ApprovalOutcome): AuthorizeResponse {
    const started = process.hrtime.bigint();
    const decisionId = randomUUID();
    const direction: DirectionName | undefined =
      req.direction === Direction.DIRECTION_OUTBOUND ? 'outbound' : req.direction === Direction.DIRECTION_INBOUND ? 'inbound' : undefined;
    const mcp: AuditMcp | undefined =
      req.mcpMethod === '' && req.mcpUnreadable === '' && req.mcpHeaderMismatch === '' ? undefined
      : {
          ...(req.mcpMethod === '' ? {} : { method: req.mcpMethod, tool: req.mcpTool }),
          ...(req.mcpUnreadable === '' ? {} : { unreadable: req.mcpUnreadable }),
          ...(req.mcpHeaderMismatch === '' ? {} : { headerMismatch: req.mcpHeaderMismatch }),
        };
    const asked = {
      direction: direction ?? 'unspecified',
      host: req.destinationHost,
      port: req.destinationPort,
      method: req.method,
      // A query may carry a credential (`?access_token=…`) and audit events go to a SIEM.
      path: redactQuery(req.path),
      ...(mcp === undefined ? {} : { mcp }),
      ...(req.inspected ? { inspected: true } : {}),
    } satisfies Omit<AuditRequest, 'source' | 'destination'>;
    const refuse = (err: AirlockError, reason: string, source: string, destination: string): AirlockError => {
      this.#d.metrics.refused.inc({ reason });
      this.#d.audit.refusal({ operation: 'Authorize', reasonCode: reason, reason: err.message, ...(caller instanceof AirlockError ? {} : { caller: caller.uri }), decisionId, request: { ...asked, source, destination } });
      return err;
    };

    if (caller instanceof AirlockError) throw refuse(caller, 'unauthenticated', '', '');
    // fail-closed audit: no decision that could not be shipped to the SIEM.
    if (!this.#d.audit.accepting()) {
      throw refuse(new AirlockError(ErrorCode.AuthzUnavailable, 'audit events cannot be written (the audit spool is full, auditSpoolFull is fail-closed): calls are refused until it drains'), 'audit_unavailable', req.sourceSpiffeId, req.destinationSpiffeId);
    }
    if (direction === undefined) {
      throw refuse(new AirlockError(ErrorCode.BadRequest, 'direction must be OUTBOUND or INBOUND'), 'bad_request', req.sourceSpiffeId, req.destinationSpiffeId);
    }
    // A sidecar may only ask about itself.
    const self = direction === 'outbound' ? req.sourceSpiffeId : req.destinationSpiffeId;
    if (self !== caller.uri) {
      const which = direction === 'outbound' ? 'source' : 'destination';
      const err = new AirlockError(ErrorCode.PermissionDenied, `the ${which} of an ${direction.toUpperCase()} request must be the caller (${caller.uri})`);
      throw refuse(err, 'permission_denied', req.sourceSpiffeId, req.destinationSpiffeId);
    }

    const snapshot = this.#d.decisions();
    const engine = snapshot.engine;
    // Labels (from attestation, registered with the agent) are looked up per call, and only when a segment selects by them.
    const withLabels = engine.usesLabels;
    let source: SpiffeId;
    let destination: Destination;
    let upstream: AuthorizeResponse['upstream'];
    try {
      if (req.destinationHost === '') throw new AirlockError(ErrorCode.BadRequest, 'destination_host is required');
      if (direction === 'outbound') {
        source = caller;
        const to = destinationOfHost(snapshot.agents, this.#d.trustDomain, req.destinationHost, withLabels);
        destination = to.destination;
        if (to.agent !== undefined) upstream = { address: to.agent.inboundAddress, spiffeId: to.agent.spiffeId };
      } else {
        source = parseSpiffeId(req.sourceSpiffeId);
        // The caller's own agent, whatever Host the peer sent: a host policy never admits a call into an agent.
        destination = agentDestination(snapshot.agents, caller, withLabels);
      }
      if (req.mcpListedTools.length > MAX_LISTED_TOOLS) throw new AirlockError(ErrorCode.BadRequest, `more than ${MAX_LISTED_TOOLS} tools to filter`);
      checkListedToolPins(req.mcpListedToolPins);
      checkHeaderBounds(req);
      checkSecretFindings(req.secretFindings);
      checkDestinationAddresses(req.destinationAddresses);
    } catch (err) {
      const e = err instanceof AirlockError ? err : new AirlockError(ErrorCode.BadRequest, errorMessage(err));
      throw refuse(e, 'bad_request', req.sourceSpiffeId, req.destinationSpiffeId);
    }

    // A body the sidecar skipped on a stale scope is never judged as "no MCP": it reads it and asks again.
    if (req.mcpBodySkipped && needsMcpBody(snapshot, destination, req.destinationPort)) return mcpBodyRequired(this.#d.metrics, decisionId, engine.version);
    // The header map is built only when some rule looks at headers: no rule can tell them from none.
    const headers = !engine.usesHeaders || (req.headers.length === 0 && !req.headersIncomplete) ? undefined : headerInput(req.headers, req.headersIncomplete);
    // Findings matter (and are audited) for external hosts only: agents of the mesh pass each other tokens.
    const secretFindings = req.secretFindings.length === 0 || destination.kind !== 'host' ? undefined : req.secretFindings;
    const call = { source, destination, port: req.destinationPort, method: req.method, path: req.path, mcp: mcpOf(req, engine.usesArguments), headers, ...(secretFindings === undefined ? {} : { secretFindings }), ...(req.mcpHeaderMismatch === '' ? {} : { mcpHeaderMismatch: req.mcpHeaderMismatch }), ...(req.destinationAddresses.length === 0 || destination.kind !== 'host' ? {} : { destinationAddresses: req.destinationAddresses }) };
    const { decision: judged, input } = decide(snapshot, call);
    // Allowed to an external name while feeds list addresses: no decision until the sidecar sends what it resolves to (README "Threat feeds").
    // A call a rule holds for approval too, before it is held: the approved call dials that answer.
    if (req.approvalId === '' && addressesRequired(judged.allow, destination, snapshot.threats, req.destinationAddresses)) {
      // Not audited (no decision), but counted: a sidecar asking without ever calling shows here.
      this.#d.metrics.refused.inc({ reason: 'addresses_required' });
      return askAgain(decisionId, judged.version, 'threat feeds list addresses: resolve the name and ask again with destination_addresses', { addressesRequired: true });
    }
    // Human approval: held (pending), released, or denied (README "Human approval"); nothing to do (no allocation) for other calls.
    const approval = req.approvalId === '' && judged.approval === undefined ? undefined : applyApproval(judged, { approvals: this.#d.approvals, direction, req, source, destination, decisionId, held });
    if (approval?.overLimit === true) this.#d.metrics.refused.inc({ reason: 'approval_limit' });
    const approved = approval?.decision ?? judged;
    const pending = approval?.pending;
    // A call the source makes, counted once: OUTBOUND (a mesh call's INBOUND check and a tools/list
    // filter are not new calls); a held call when its outcome is decided.
    const newCall = pending === undefined && direction === 'outbound' && req.mcpListedTools.length === 0;
    // RateLimits charge new calls.
    const { decision: limited, hit: rateLimit } = pending !== undefined ? { decision: approved, hit: undefined } : this.#limiter.charge(engine, input, approved, newCall);
    // Behaviour baselines learn and judge the same calls (README "Behaviour baselines").
    const decision = this.#d.baselines === undefined || engine.baselines.length === 0 ? limited : this.#d.baselines.observe(engine, { ...input, decisionId, mcpMethod: req.mcpMethod, mcpTool: req.mcpTool }, limited, newCall);
    // Filtering a tools/list answer: the same engine and candidate policies, the rules judged per listed tool; none when denied.
    const callable = decision.allow && req.mcpListedTools.length > 0 ? engine.callableTools(input, req.mcpListedTools) : [];
    // The tools pinned per server: a changed or flagged one is withheld when the deciding rule's onToolChange says so.
    const pins = this.#d.toolPins;
    const pinned = pins === undefined || !decision.allow || req.mcpListedToolPins.length === 0 || req.mcpMethod !== 'tools/list' ? undefined
      : pins.observe(serverOf(destination, req.destinationPort), destination.kind === 'agent' ? destination.id.uri : undefined, req.mcpListedToolPins, engine.onToolChange(decision.policy, decision.rule) ?? DEFAULT_TOOL_CHANGE_ACTION);
    const allowedTools = pinned === undefined || pinned.withheld.size === 0 ? callable : callable.filter((t) => !pinned.withheld.has(t));
    const verdict = pending !== undefined ? 'pending' : decision.allow ? 'allow' : 'deny';
    const counted = this.#counted[direction];
    if (verdict === 'pending') this.#decisionCounts.countPending(direction);
    else this.#decisionCounts.count(direction, decision, { rateLimited: rateLimit?.mode === 'enforce', headerMismatch: req.mcpHeaderMismatch !== '' });
    const reason = pending === undefined ? decision.reason : `held for a human approval (${pending.id}) by policy "${decision.policy}"`;
    const latency = Number(process.hrtime.bigint() - started) / 1e9;
    counted.duration.observe(latency);
    // The argument paths the rule looked at (values redacted unless loggable), and a tools/list filter's outcome.
    const withArguments = decision.arguments === undefined ? mcp : { ...mcp, arguments: decision.arguments };
    const listed = req.mcpListedTools.length === 0 ? withArguments : { ...withArguments, listedTools: req.mcpListedTools.length, allowedTools };
    const decidedMcp = pinned === undefined || pinned.findings.length === 0 ? listed : { ...listed, toolPins: pinned.findings };
    this.#d.audit.decision({
      decisionId,
      ...asked,
      direction,
      source: source.uri,
      sourceSegments: engine.segmentsOf(source, input.sourceLabels),
      destination: destination.kind === 'agent' ? destination.id.uri : '',
      destinationSegments: destination.kind === 'agent' ? engine.segmentsOf(destination.id, destination.labels) : [],
      ...(decidedMcp === undefined ? {} : { mcp: decidedMcp }),
      verdict,
      ...(approval?.approval === undefined ? {} : { approval: approval.approval }),
      mode: decision.dryRunDeny ? 'dry-run' : 'enforce',
      policyVersion: decision.version,
      policy: decision.policy,
      rule: decision.rule,
      reason,
      latencyMs: latency * 1000,
      ...(decision.allow && decision.tls !== undefined ? { tls: decision.tls } : {}),
      ...(rateLimit === undefined ? {} : { rateLimit }),
      ...(judged.threat === undefined ? {} : { threat: judged.threat }),
      ...(secretFindings === undefined ? {} : { secrets: secretFindings.map((f) => ({ detector: f.detector, field: f.field })) }),
    });
    // The destination's sidecar admits this one call on the ticket: the decision covers both hops.
    // None for a body not read as MCP (that sidecar asks, judging its own reading), a tools/list
    // filter, or a decision a policy made on headers, which a ticket does not bind (a sidecar holding
    // a stolen SVID could get a ticket for one and send another). Tool arguments a rule judged are
    // bound by their digest, so the ingress admits only those very arguments.
    const tickets = this.#d.tickets;
    const ticket =
      decision.allow && pending === undefined && decision.approval === undefined && upstream !== undefined && tickets !== undefined && req.mcpUnreadable === '' && req.mcpListedTools.length === 0 && decision.readsUnboundContent !== true && (decision.readsArguments !== true || req.mcpArgumentsUnreadable === '')
        ? tickets.issue({
            decisionId,
            source: source.uri,
            destination: upstream.spiffeId,
            instance: upstream.address,
            host: req.destinationHost,
            port: req.destinationPort,
            method: req.method,
            path: req.path,
            mcpMethod: req.mcpMethod,
            mcpTool: req.mcpMethod === 'tools/call' ? req.mcpTool : '',
            // Arguments a rule judged: the ticket binds them (the ingress digests its own reading).
            mcpArgumentsDigest: decision.readsArguments === true && req.mcpMethod === 'tools/call' ? argumentsDigest(req.mcpArguments) : '',
            policyVersion: decision.version,
          })
        : '';
    if (pending !== undefined) {
      // Held: nothing to reach yet; the sidecar asks again with the approval id and waits.
      return AuthorizeResponse.fromPartial({ verdict: Verdict.VERDICT_APPROVAL_PENDING, decisionId, reason, policy: decision.policy, policyVersion: decision.version, rule: decision.rule, approvalId: pending.id, approvalWaitMs: Math.max(0, pending.expiresAt - Date.now()) });
    }
    return {
      verdict: decision.allow ? Verdict.VERDICT_ALLOW : Verdict.VERDICT_DENY,
      decisionId,
      reason: decision.reason,
      policy: decision.policy,
      // Only an allowed mesh call gets an upstream; external hosts are dialed by the sidecar itself.
      upstream: decision.allow ? upstream : undefined,
      dryRunDeny: decision.dryRunDeny,
      policyVersion: decision.version,
      rule: decision.rule,
      mcpAllowedTools: allowedTools,
      tls: decision.allow && decision.tls !== undefined ? TLS_MODES[decision.tls] : TlsMode.TLS_MODE_UNSPECIFIED,
      ticket,
      approvalId: '',
      approvalWaitMs: 0,
      approvalOutcome: approval?.outcome ?? '',
      rateLimited: rateLimit?.mode === 'enforce',
      retryAfterMs: rateLimit?.mode === 'enforce' ? rateLimit.retryAfterMs : 0,
      addressesRequired: false,
      mcpBodyRequired: false,
    };
  }
}
