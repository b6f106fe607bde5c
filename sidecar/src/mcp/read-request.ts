import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { argumentsJson } from '@airlock/common/mcp-arguments';
import type { McpMessage } from '../authz/authorizer.ts';
import { duplicateKey } from './duplicate-key.ts';
import { specHeaderMismatch } from './spec-headers.ts';

export const DEFAULT_MCP_MAX_BODY_BYTES = 64 * 1024;
/** Longer method or tool names are not MCP as anyone writes it; refusing them bounds what is sent on. */
const MAX_NAME_LENGTH = 256;

export interface McpRead {
  /** The MCP message of a POST, or why it could not be read; undefined for other methods. */
  readonly message: McpMessage | undefined;
  /**
   * Set when the request carries the MCP spec's `Mcp-Method` / `Mcp-Name` headers and they do not
   * match the body (or the body could not be read to check them): why. Such a request is denied.
   */
  readonly headerMismatch?: string;
  /**
   * What to send on as the request body: the bytes read (the whole body), or those followed by the
   * rest of the stream when only a prefix was read; undefined when nothing was read (send `req`).
   */
  readonly body: Buffer | Readable | undefined;
  /** The body's first bytes as read (all of them when `body` is a Buffer), for the secret scan; undefined when none were read. */
  readonly prefix?: Buffer;
  /** A POST whose body was not read for MCP (`read` false): `message` is undefined; readSkippedMcp reads it if asked. */
  readonly skipped?: true;
}

/** The answer for every call that is not a POST (most calls): one shared object, not one per call. */
const NOT_READ: McpRead = { message: undefined, body: undefined };
const SKIPPED: McpRead = { message: undefined, body: undefined, skipped: true };

/**
 * Reads a bounded prefix of a POST body with content-type application/json and extracts the
 * JSON-RPC method and, for `tools/call`, the tool name, so rules can judge the MCP call. The body
 * is sent on unchanged either way. A body that cannot be judged says why (larger than the limit,
 * not JSON, not a JSON-RPC request): rules on MCP never allow it.
 */
export async function readMcpRequest(req: IncomingMessage, maxBytes: number, scanBytes = 0, read = true): Promise<McpRead> {
  if (req.method !== 'POST') return scanBytes > 0 && hasBody(req) ? scanOnly(req, undefined, scanBytes) : NOT_READ;
  // No rule reads MCP for this destination (mcp-body-scope.ts): not parsed, only the scan prefix is read.
  if (!read) return scanBytes > 0 && hasBody(req) ? { ...(await scanOnly(req, undefined, scanBytes)), skipped: true } : SKIPPED;
  return judged(req, await readBody(req, maxBytes, scanBytes));
}

/**
 * The MCP reading of a POST whose body `skipped` did not read (the control plane asked for it): the
 * bytes the scan took are read on from, never lost; the body goes on whole as before.
 */
export async function readSkippedMcp(req: IncomingMessage, skipped: McpRead, maxBytes: number): Promise<McpRead> {
  const taken = skipped.prefix === undefined ? undefined : { prefix: skipped.prefix, complete: skipped.body instanceof Buffer };
  const read = await readBody(req, maxBytes, 0, taken);
  // Not read on (another content type, declared too large): what the scan took still goes on.
  return judged(req, read.body === undefined && skipped.body !== undefined ? { ...read, body: skipped.body, ...(skipped.prefix === undefined ? {} : { prefix: skipped.prefix }) } : read);
}

function judged(req: IncomingMessage, read: McpRead & { readonly value?: unknown }): McpRead {
  const mismatch = specHeaderMismatch(req.rawHeaders, read.message, read.value);
  const prefix = read.prefix === undefined ? {} : { prefix: read.prefix };
  return mismatch === undefined ? { message: read.message, body: read.body, ...prefix } : { message: read.message, body: read.body, headerMismatch: mismatch, ...prefix };
}

/**
 * `scanBytes` > 0 (outbound, for the secret scan): a body not read for MCP (another method or
 * content type, or declared larger than `maxBytes`) has its first `scanBytes` read all the same,
 * in this one read, and replayed ahead of the rest.
 */
async function readBody(req: IncomingMessage, maxBytes: number, scanBytes: number, taken?: Taken): Promise<McpRead & { readonly value?: unknown }> {
  const type = mediaType(req.headers['content-type']);
  if (type !== 'application/json') {
    const message = { unreadable: `content-type is ${type === '' ? 'missing' : `"${type.slice(0, 100)}"`}, not application/json` };
    return scanBytes > 0 && hasBody(req) ? scanOnly(req, message, scanBytes) : { message, body: undefined };
  }
  const tooLarge = { unreadable: `the body is larger than ${maxBytes} bytes` };
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > maxBytes) return scanBytes > 0 ? scanOnly(req, tooLarge, scanBytes) : { message: tooLarge, body: undefined };
  const { prefix, complete } = taken === undefined ? await readPrefix(req, maxBytes) : await readOn(req, maxBytes, taken);
  if (!complete) return { message: tooLarge, body: Readable.from(replay(prefix, req), { objectMode: false }), prefix };
  const { message, value } = parseBody(prefix);
  return { message, body: prefix, value, prefix };
}

/** Bytes of a body already read (by the scan), and whether they are all of it. */
interface Taken {
  readonly prefix: Buffer;
  readonly complete: boolean;
}

/** As readPrefix, for a body whose first bytes were taken already: reads on from them. */
async function readOn(req: IncomingMessage, max: number, taken: Taken): Promise<Taken> {
  if (taken.prefix.length > max) return { prefix: taken.prefix, complete: false };
  if (taken.complete) return taken;
  // readPrefix paused the request where the scan stopped: a 'data' listener alone would not resume it.
  req.resume();
  const more = await readPrefix(req, max - taken.prefix.length);
  return { prefix: Buffer.concat([taken.prefix, more.prefix]), complete: more.complete };
}

/** Reads the first `scanBytes` of a body that is not judged as MCP (`message` says why, or undefined for a method other than POST). */
async function scanOnly(req: IncomingMessage, message: McpMessage | undefined, scanBytes: number): Promise<McpRead> {
  const { prefix, complete } = await readPrefix(req, scanBytes);
  return { message, body: complete ? prefix : Readable.from(replay(prefix, req), { objectMode: false }), prefix };
}

/** RFC 9112 §6.3: a request has a body only when it says so (Content-Length above 0, or Transfer-Encoding). */
function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/** The JSON-RPC request in a body, or why there is none. */
export function parseMcpMessage(body: Buffer): McpMessage {
  return parseBody(body).message;
}

/** The message, and the parsed JSON it came from (for the spec headers' check). */
function parseBody(body: Buffer): { message: McpMessage; value?: unknown } {
  let value: unknown;
  const text = body.toString('utf8');
  try {
    value = JSON.parse(text);
  } catch {
    return { message: { unreadable: 'the body is not valid JSON' } };
  }
  return { message: messageOf(value, text), value };
}

function messageOf(value: unknown, text: string): McpMessage {
  const duplicate = duplicateKey(text);
  if (duplicate !== undefined) return { unreadable: `the JSON has the key "${duplicate.slice(0, 100)}" twice in one object (a server could read either)` };
  if (Array.isArray(value)) return { unreadable: 'JSON-RPC batches are not supported' };
  if (!isObject(value)) return { unreadable: 'the body is not a JSON-RPC object' };
  if (value.jsonrpc !== '2.0') return { unreadable: 'the body is not JSON-RPC 2.0 ("jsonrpc" is not "2.0")' };
  const method = value.method;
  if (typeof method !== 'string' || method === '') return { unreadable: 'the JSON-RPC message has no method (not a request or notification)' };
  if (method.length > MAX_NAME_LENGTH) return { unreadable: `the JSON-RPC method is longer than ${MAX_NAME_LENGTH} characters` };
  if (method === 'tools/call') {
    const name = isObject(value.params) ? value.params.name : undefined;
    if (typeof name !== 'string' || name === '') return { unreadable: 'tools/call without a tool name (params.name)' };
    if (name.length > MAX_NAME_LENGTH) return { unreadable: `the tool name is longer than ${MAX_NAME_LENGTH} characters` };
    // Sent for argument rules: bounded, re-serialized from what was parsed (duplicate keys were refused above).
    return { method, tool: name, id: value.id, arguments: argumentsJson((value.params as Record<string, unknown>).arguments) };
  }
  return { method, tool: '', id: value.id };
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `application/json; charset=utf-8` → `application/json`. */
export function mediaType(header: string | string[] | undefined): string {
  const v = Array.isArray(header) ? (header[0] ?? '') : (header ?? '');
  return (v.split(';')[0] ?? '').trim().toLowerCase();
}

/** Reads until the end or until more than `max` bytes arrived, then leaves the rest unread (paused). */
function readPrefix(req: IncomingMessage, max: number): Promise<{ prefix: Buffer; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > max) {
        cleanup();
        req.pause();
        resolve({ prefix: Buffer.concat(chunks), complete: false });
      }
    };
    const onEnd = (): void => {
      cleanup();
      resolve({ prefix: Buffer.concat(chunks), complete: true });
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(new AirlockError(ErrorCode.BadRequest, `the request body could not be read: ${err.message}`, { cause: err }));
    };
    const onClose = (): void => {
      if (req.readableEnded) return;
      cleanup();
      reject(new AirlockError(ErrorCode.BadRequest, 'the request body ended early'));
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
    req.once('close', onClose);
  });
}

async function* replay(prefix: Buffer, rest: IncomingMessage): AsyncGenerator<Buffer> {
  yield prefix;
  for await (const chunk of rest) yield chunk as Buffer;
}
