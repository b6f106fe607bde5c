// For tests only: the audit events of log lines, and the JSON Schema they are held to.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const SCHEMA_FILE = join(import.meta.dirname, '..', '..', '..', 'docs', 'audit-event.schema.json');

let validate: ((event: unknown) => string[]) | undefined;

/** The problems of `event` against docs/audit-event.schema.json ([] when it conforms). */
export function auditSchemaProblems(event: unknown): string[] {
  if (validate === undefined) {
    const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
    addFormats.default(ajv);
    const check = ajv.compile(JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as object);
    validate = (e) => (check(e) ? [] : (check.errors ?? []).map((err) => `${err.instancePath || '/'} ${err.message ?? ''} ${JSON.stringify(err.params)}`));
  }
  return validate(event);
}

/** The `audit` events of parsed log lines (what the control plane writes, other lines left out). */
export function auditEventsOf(lines: readonly Record<string, unknown>[]): Record<string, unknown>[] {
  return lines.flatMap((l) => (typeof l.audit === 'object' && l.audit !== null ? [l.audit as Record<string, unknown>] : []));
}
