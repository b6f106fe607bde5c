/**
 * AuthorizationService for the hot path: the generated definition, with AuthorizeStream's messages
 * (both directions) encoded into one BinaryWriter kept per message type instead of a new one per
 * message. A new writer starts at 128 bytes and doubles (with a copy) up to the message's size,
 * and a nested message over 127 bytes is shifted once more when its length is written; the
 * generated serializer then copies the bytes twice (finish(), Buffer.from). Kept, the writer is
 * already large enough, and the bytes are copied once (finish()). Same bytes on the wire (a test
 * compares them). The control plane and the sidecars' stream client both use it.
 */
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import { AuthorizationServiceService, AuthorizeStreamRequest, AuthorizeStreamResponse, type AuthorizationServiceClient } from '../gen/airlock/authorization/v1/authorization.ts';

/** A writer whose buffer grew past this is dropped after the message: one 512-check message does not stay allocated. */
const KEEP_BYTES = 64 * 1024;

/** A serializer for one message type that reuses its writer (encoding is synchronous: one message at a time). */
export function reusingSerializer<T>(codec: { encode(message: T, writer: BinaryWriter): BinaryWriter }): (message: T) => Buffer {
  let writer = new BinaryWriter();
  return (message) => {
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = codec.encode(message, writer).finish();
    } catch (err) {
      // A message that failed half-way leaves the writer mid-message: start the next one afresh.
      writer = new BinaryWriter();
      throw err;
    }
    if (bytes.byteLength > KEEP_BYTES) writer = new BinaryWriter();
    // finish() returned a copy: the Buffer owns its bytes, whatever is encoded next.
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

export const AuthorizationService = {
  ...AuthorizationServiceService,
  authorizeStream: {
    ...AuthorizationServiceService.authorizeStream,
    requestSerialize: reusingSerializer(AuthorizeStreamRequest),
    responseSerialize: reusingSerializer(AuthorizeStreamResponse),
  },
} as const;

/** The generated client's constructor over AuthorizationService. */
export const AuthorizationClient = makeGenericClientConstructor(AuthorizationService, 'airlock.authorization.v1.AuthorizationService') as unknown as typeof AuthorizationServiceClient;
export type AuthorizationClient = AuthorizationServiceClient;
