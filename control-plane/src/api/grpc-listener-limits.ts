import type { Server as NetServer } from 'node:net';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { Server, ServerCredentials } from '@grpc/grpc-js';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { capConnections, capConnectionsPerClient, type LimitRefusal } from '@airlock/common/listener-limits';

export interface GrpcConnectionCaps {
  readonly maxConnections: number;
  readonly maxConnectionsPerClient: number;
  /** The client of a connection once its TLS handshake is done (a verified SPIFFE ID, else its address). */
  readonly clientOf: (socket: TLSSocket) => string;
}

/**
 * Caps the open connections of `server`'s listeners, in all and per client, as every other listener
 * is capped. grpc-js has no option for it and keeps its HTTP/2 servers to itself, so the method that
 * makes them is wrapped; a grpc-js without that method fails the start loudly rather than leaving the
 * listener uncapped. (The TLS handshake timeout is a TLS server option: grpc-server-credentials.ts.)
 */
export function capGrpcConnections(server: Server, caps: GrpcConnectionCaps, refused: (reason: LimitRefusal) => void): void {
  const target = server as unknown as { createHttp2Server?: (credentials: ServerCredentials) => NetServer };
  const create = target.createHttp2Server;
  if (typeof create !== 'function') throw new AirlockError(ErrorCode.Internal, 'this @grpc/grpc-js makes its listeners differently: the gRPC connection cap cannot be applied');
  target.createHttp2Server = function (this: unknown, credentials: ServerCredentials): NetServer {
    const http2Server = create.call(this, credentials);
    capConnections(http2Server, caps.maxConnections, refused);
    // Only a TLS listener knows its clients (the gRPC listener always is one).
    if ('setSecureContext' in http2Server) capConnectionsPerClient(http2Server as TlsServer, caps.maxConnectionsPerClient, caps.clientOf, refused);
    return http2Server;
  };
}
