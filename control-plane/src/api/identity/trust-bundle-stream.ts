import type { ServerWritableStream } from '@grpc/grpc-js';
import { AirlockError } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import type { SpiffeId } from '@airlock/common/spiffe';
import type { TicketKey } from '@airlock/common/ticket';
import type { McpBodyScope, WatchTrustBundleRequest, WatchTrustBundleResponse } from '@airlock/proto/identity/v1';
import type { Revocations, TrustBundleSnapshot } from '../../ca/revocations.ts';
import { toGrpcFailure } from '../grpc-status.ts';

type Call = ServerWritableStream<WatchTrustBundleRequest, WatchTrustBundleResponse>;

/** The ticket keys of one identity, and when they change (authz/tickets/ticket-keys.ts). */
export interface TicketKeySource {
  keysOf(identity: string): TicketKey[];
  onChange(listener: () => void): () => void;
}

/** Identities quarantined now (selectors resolved by the control plane), and when that changes (incident/quarantines.ts). */
export interface QuarantineSource {
  identities(): readonly string[];
  onChange(listener: () => void): () => void;
}

/** Which destinations need the MCP body read, and when that changes (authz/mcp-body.ts). */
export interface McpBodySource {
  current(): McpBodyScope;
  onChange(listener: () => void): () => void;
}

function toMessage(s: TrustBundleSnapshot, ticketKeys: readonly TicketKey[], quarantined: readonly string[], mcpBody: McpBodyScope | undefined): WatchTrustBundleResponse {
  return {
    trustBundlePem: s.trustBundlePem,
    revokedCertificates: s.revokedCertificates.map((c) => ({ issuer: c.issuer, serial: c.serial })),
    revokedSpiffeIds: [...s.revokedSpiffeIds],
    renewUnlessIssuedByPem: s.renewUnlessIssuedByPem,
    ticketKeys: ticketKeys.map((k) => ({ keyId: k.keyId, key: k.key })),
    quarantinedSpiffeIds: [...quarantined],
    mcpBody,
  };
}

/**
 * WatchTrustBundle: the current bundle and revoked certificates at once, then again on every change,
 * until the sidecar goes away. Only an mTLS caller with a valid SVID may watch.
 */
export function watchTrustBundleHandler(deps: { revocations: Revocations; ticketKeys?: TicketKeySource; quarantines?: QuarantineSource; mcpBody?: McpBodySource; callerOf: (call: Call) => SpiffeId | AirlockError; logger: Logger }) {
  return (call: Call): void => {
    // callerOf records a refusal (at a bounded rate): anyone can open this stream.
    const caller = deps.callerOf(call);
    if (caller instanceof AirlockError) {
      const failure = toGrpcFailure(caller);
      call.emit('error', { code: failure.code, details: failure.details });
      return;
    }
    // The caller's own ticket keys only (its identity from the handshake): never another identity's.
    const keysOf = (): TicketKey[] => deps.ticketKeys?.keysOf(caller.uri) ?? [];
    const message = (snapshot = deps.revocations.snapshot()): WatchTrustBundleResponse => toMessage(snapshot, keysOf(), deps.quarantines?.identities() ?? [], deps.mcpBody?.current());
    const unsubscribe = [
      deps.revocations.watch((snapshot) => call.write(message(snapshot))),
      deps.ticketKeys?.onChange(() => call.write(message())),
      deps.quarantines?.onChange(() => call.write(message())),
      deps.mcpBody?.onChange(() => call.write(message())),
    ];
    const stop = (): void => {
      for (const u of unsubscribe) u?.();
    };
    call.on('cancelled', stop);
    call.on('close', stop);
    call.on('error', stop);
    call.write(message());
    deps.logger.debug({ caller: caller.uri }, 'trust bundle watch started');
  };
}
