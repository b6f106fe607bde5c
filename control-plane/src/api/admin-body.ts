import { AirlockError, ErrorCode } from '@airlock/common/errors';

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
