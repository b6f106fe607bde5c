import type { IncomingMessage } from 'node:http';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { HttpError } from './http-errors.ts';

/** Admin request bodies above this are refused (413); policy bundles pass a larger limit. */
const MAX_BODY_BYTES = 64 * 1024;

/** A JSON object body with only `known` fields (an unknown one is a typo the caller should hear about). */
export function objectBody(body: unknown, known: readonly string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new AirlockError(ErrorCode.BadRequest, 'the body must be a JSON object');
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((k) => !known.includes(k));
  if (unknown.length > 0) throw new AirlockError(ErrorCode.BadRequest, `unknown field(s): ${unknown.join(', ')} (known: ${known.join(', ') || 'none'})`);
  return fields;
}

export function optionalBoolean(fields: Record<string, unknown>, name: string): boolean {
  const v = fields[name];
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new AirlockError(ErrorCode.BadRequest, `"${name}" must be true or false`);
  return v;
}

export function optionalString(fields: Record<string, unknown>, name: string): string | undefined {
  const v = fields[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new AirlockError(ErrorCode.BadRequest, `"${name}" must be a string`);
  return v;
}

/** Reads a JSON body of at most `max` bytes; more is 413, not JSON is 400. */
export async function readJson(req: IncomingMessage, max = MAX_BODY_BYTES): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > max) throw new HttpError(413, 'payload_too_large', `the body must be at most ${max} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw new HttpError(413, 'payload_too_large', `the body must be at most ${max} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new AirlockError(ErrorCode.BadRequest, 'the body must be JSON');
  }
}
