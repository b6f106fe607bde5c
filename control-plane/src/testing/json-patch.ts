// For tests only: applies the JSON Patch operations the injector emits (RFC 6902 add and replace),
// strictly, as the API server would: a path to nowhere or an index past the end is an error.
export interface Operation {
  readonly op: string;
  readonly path: string;
  readonly value?: unknown;
}

export function applyPatch<T>(document: T, ops: readonly Operation[]): T {
  const root = structuredClone(document) as unknown;
  for (const op of ops) {
    if (op.op !== 'add' && op.op !== 'replace') throw new Error(`unexpected op ${op.op}`);
    const segments = op.path.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = segments.pop();
    if (last === undefined || !op.path.startsWith('/')) throw new Error(`bad path ${op.path}`);
    let parent: unknown = root;
    for (const s of segments) {
      parent = Array.isArray(parent) ? parent[Number(s)] : (parent as Record<string, unknown> | undefined)?.[s];
      if (typeof parent !== 'object' || parent === null) throw new Error(`${op.path}: no parent at ${s}`);
    }
    const value = structuredClone(op.value);
    if (Array.isArray(parent)) {
      const index = last === '-' ? parent.length : Number(last);
      if (!Number.isInteger(index) || index < 0 || index > parent.length || (op.op === 'replace' && index >= parent.length)) throw new Error(`${op.path}: index out of range`);
      if (op.op === 'add') parent.splice(index, 0, value);
      else parent[index] = value;
    } else {
      const obj = parent as Record<string, unknown>;
      if (op.op === 'replace' && !(last in obj)) throw new Error(`${op.path}: nothing to replace`);
      obj[last] = value;
    }
  }
  return root as T;
}
