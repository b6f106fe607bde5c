import { randomUUID } from 'node:crypto';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { parseSpiffeId, type SpiffeId } from '@airlock/common/spiffe';
import { Direction, Verdict, type AuthorizeRequest, type AuthorizeResponse } from '@airlock/proto/authorization/v1';
import type { ControlPlaneMetrics } from '../monitoring/metrics.ts';
import type { PolicyEngine } from '../policy/engine.ts';
import type { Store } from '../store/store.ts';
import { lookupMeshHost } from './registry.ts';
import { denyIfRevoked } from './revoked.ts';

export interface AuthorizerDeps {
  readonly trustDomain: string;
  readonly store: Store;
  /** Read per call, so a policy reload applies to the very next decision. */
  readonly policy: () => PolicyEngine;
  readonly metrics: ControlPlaneMetrics;
  /** The audit logger: one line per decision or refusal. */
  readonly audit: Logger;
  /** Revoked identities are denied as source or destination, whatever the policy says. */
  readonly isRevoked?: (spiffeId: string) => boolean;
}

type DirectionName = 'outbound' | 'inbound';

/**
 * The Authorize decision, free of gRPC: the caller's verified identity and the request in, a
 * response or an AirlockError out. Every outcome (decision or refusal) is audited and counted.
 */
export class Authorizer {
  readonly #d: AuthorizerDeps;

  constructor(deps: AuthorizerDeps) {
    this.#d = deps;
  }

  /** `caller` is the verified client identity, or why there is none (refused as unauthenticated). */
  authorize(caller: SpiffeId | AirlockError, req: AuthorizeRequest): AuthorizeResponse {
    const started = process.hrtime.bigint();
    const decisionId = randomUUID();
    const direction: DirectionName | undefined =
      req.direction === Direction.DIRECTION_OUTBOUND ? 'outbound' : req.direction === Direction.DIRECTION_INBOUND ? 'inbound' : undefined;
    const base = {
      audit: true,
      decisionId,
      direction: direction ?? 'unspecified',
      host: req.destinationHost,
      port: req.destinationPort,
      method: req.method,
      path: req.path,
    };
    const refuse = (err: AirlockError, reason: string, source: string, destination: string): AirlockError => {
      this.#d.metrics.refused.inc({ reason });
      this.#d.audit.warn({ ...base, source, destination, verdict: 'refused', policy: '', reason: err.message, dryRun: false }, 'authorization refused');
      return err;
    };

    if (caller instanceof AirlockError) throw refuse(caller, 'unauthenticated', '', '');
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

    let source: SpiffeId;
    let destination: SpiffeId | undefined;
    let upstream: AuthorizeResponse['upstream'];
    try {
      if (direction === 'outbound') {
        source = caller;
        const mesh = lookupMeshHost(this.#d.store, this.#d.trustDomain, req.destinationHost);
        if (mesh !== undefined) {
          destination = mesh.id;
          upstream = { address: mesh.agent.inboundAddress, spiffeId: mesh.id.uri };
        }
      } else {
        source = parseSpiffeId(req.sourceSpiffeId);
        destination = caller;
      }
      if (req.destinationHost === '') throw new AirlockError(ErrorCode.BadRequest, 'destination_host is required');
    } catch (err) {
      const e = err instanceof AirlockError ? err : new AirlockError(ErrorCode.BadRequest, errorMessage(err));
      throw refuse(e, 'bad_request', req.sourceSpiffeId, req.destinationSpiffeId);
    }

    const decision = denyIfRevoked(
      this.#d.policy().evaluate({
        source,
        destination,
        host: req.destinationHost,
        port: req.destinationPort,
        method: req.method,
        path: req.path,
      }),
      { source, destination },
      this.#d.isRevoked,
    );
    const verdict = decision.allow ? 'allow' : 'deny';
    this.#d.metrics.decisions.inc({ direction, verdict });
    this.#d.metrics.decisionDuration.observe({ direction }, Number(process.hrtime.bigint() - started) / 1e9);
    this.#d.audit.info(
      {
        ...base,
        source: source.uri,
        destination: destination?.uri ?? '',
        verdict,
        policy: decision.policy,
        reason: decision.reason,
        dryRun: decision.dryRunDeny,
      },
      'authorization decision',
    );
    return {
      verdict: decision.allow ? Verdict.VERDICT_ALLOW : Verdict.VERDICT_DENY,
      decisionId,
      reason: decision.reason,
      policy: decision.policy,
      // Only an allowed mesh call gets an upstream; external hosts are dialed by the sidecar itself.
      upstream: decision.allow ? upstream : undefined,
      dryRunDeny: decision.dryRunDeny,
    };
  }
}
