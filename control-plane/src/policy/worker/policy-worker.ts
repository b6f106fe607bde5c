// The policy worker thread: reads admin-submitted policy bundles (parse, validate, diff) off the
// control plane's event loop, where decisions are answered. Started by PolicyWorker.
import { parentPort } from 'node:worker_threads';
import { isAirlockError } from '@airlock/common/errors';
import { prepareChange, type PolicySnapshot } from '../change.ts';
import { ADMIN_LIMITS } from '../yaml-limits.ts';
import type { JobReply, JobRequest } from './policy-workers.ts';

// The set in force, sent again only when its version changes.
let snapshot: PolicySnapshot | undefined;

parentPort?.on('message', (job: JobRequest) => {
  if (job.snapshot !== undefined) snapshot = job.snapshot;
  let reply: JobReply;
  try {
    if (snapshot?.version !== job.version) throw new Error(`policy worker has version ${snapshot?.version ?? 'none'}, not ${job.version}`);
    reply = { id: job.id, ok: true, change: prepareChange(snapshot, job.text, job.file, ADMIN_LIMITS, job.op) };
  } catch (err) {
    reply = isAirlockError(err) ? { id: job.id, ok: false, code: err.code, message: err.message } : { id: job.id, ok: false, message: err instanceof Error ? err.message : String(err) };
  }
  parentPort?.postMessage(reply);
});
