import { afterEach, describe, expect, it } from 'vitest';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { createRootLogger } from '@airlock/common/logging';
import type { PolicySnapshot } from '../change.ts';
import { PolicyWorker } from './policy-workers.ts';

const logger = createRootLogger({ process: 'test', level: 'silent' });
const segment = (name: string): string => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: ${name} }\nspec: { selector: { namespace: ${name} } }\n`;
const EMPTY: PolicySnapshot = { version: 0, entries: [] };

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AirlockError) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('not refused');
}

/** A valid bundle of about 1 MiB: a second or so of `yaml`. */
const large = (): string => Array.from({ length: 9000 }, (_, i) => segment(`s${i}`)).join('---\n');

describe('PolicyWorker: admin bundles are read in a worker thread, within limits', () => {
  let worker: PolicyWorker | undefined;
  afterEach(() => worker?.close());

  it('diffs against the snapshot it is given, and follows a new version', async () => {
    worker = new PolicyWorker({ logger });
    const change = await worker.prepare('apply', () => EMPTY, `${segment('a')}---\n${segment('b')}`, 'request');
    expect(change.changes.map((c) => `${c.change} ${c.name}`)).toEqual(['added a', 'added b']);
    expect(change.fresh.map((e) => e.doc.doc.name)).toEqual(['a', 'b']);
    const v1: PolicySnapshot = { version: 1, entries: change.incoming };
    const next = await worker.prepare('apply', () => v1, segment('b').replace('namespace: b', 'namespace: c'), 'request');
    expect(next).toMatchObject({ version: 1, changes: [{ name: 'b', change: 'changed' }] });
  });

  it('reads a valid bundle of about 1 MiB within the default time and heap limits', async () => {
    worker = new PolicyWorker({ logger });
    const text = large();
    expect(Buffer.byteLength(text)).toBeGreaterThan(900 * 1024);
    expect((await worker.prepare('apply', () => EMPTY, text, 'request')).fresh).toHaveLength(9000);
  });

  it('refuses a hostile bundle by its limit, in the thread', async () => {
    worker = new PolicyWorker({ logger });
    expect(await refusal(worker.prepare('apply', () => EMPTY, '---\n'.repeat(262_144), 'request'))).toEqual({ code: ErrorCode.TooLarge, message: 'invalid policy:\n  - request:10001:1: more than 10000 documents (the limit)' });
    expect((await refusal(worker.prepare('apply', () => EMPTY, '['.repeat(10_000), 'request'))).message).toContain('request:1:65: more than 64 levels of nesting (the limit)');
    expect((await refusal(worker.prepare('apply', () => EMPTY, 'kind: Nope\n', 'request'))).code).toBe(ErrorCode.Policy);
  });

  it('ends a bundle over its time limit', async () => {
    worker = new PolicyWorker({ logger, timeoutMs: 1 });
    expect(await refusal(worker.prepare('apply', () => EMPTY, large(), 'request'))).toEqual({ code: ErrorCode.TooLarge, message: 'the policy took longer than 0.001 s to read (the limit)' });
  });

  it('ends a bundle over its heap limit, and serves the next from a new thread', async () => {
    worker = new PolicyWorker({ logger, maxHeapMb: 16 });
    expect(await refusal(worker.prepare('apply', () => EMPTY, large(), 'request'))).toEqual({ code: ErrorCode.TooLarge, message: 'the policy needed more than 16 MB to read (the limit)' });
    expect((await worker.prepare('apply', () => EMPTY, segment('a'), 'request')).changes).toHaveLength(1);
  });
});
