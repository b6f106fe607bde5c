import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { startKubeApiServer } from './support/kube-apiserver.ts';

/** Running: it exists and is not a zombie waiting for its new parent to reap it. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Runs support/kube-apiserver-abandoned.ts; resolves with what it started, and its exit once it is gone. */
async function abandoned(how: 'exit' | 'hang'): Promise<{ netns: string; pids: number[]; kill: () => void; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'support', 'kube-apiserver-abandoned.ts'), how], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  for await (const line of createInterface({ input: child.stdout })) {
    const started = JSON.parse(line) as { netns: string; pids: number[] };
    return { ...started, kill: () => child.kill('SIGKILL'), exited };
  }
  throw new Error('the abandoned kube-apiserver script printed nothing');
}

/** The pids still running once SIGKILL has had its effect (a killed process takes a moment to go; 10 s bound). */
async function survivors(pids: readonly number[]): Promise<number[]> {
  const end = Date.now() + 10_000;
  while (pids.some(alive) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  return pids.filter(alive);
}

const namespaces = (): string => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });

describe('the network namespace of a test kube-apiserver', () => {
  it('is removed, with etcd and the API server, when its test process exits without stop()', async () => {
    const run = await abandoned('exit');
    await run.exited;
    expect(namespaces()).not.toContain(run.netns);
    expect(await survivors(run.pids)).toEqual([]);
  });

  it('is removed by the next start when its test process was killed', async () => {
    const run = await abandoned('hang');
    expect(run.pids.length).toBe(2);
    run.kill();
    await run.exited;
    expect(namespaces()).toContain(run.netns);
    const next = await startKubeApiServer();
    try {
      expect(namespaces()).not.toContain(run.netns);
      expect(await survivors(run.pids)).toEqual([]);
    } finally {
      await next.stop();
    }
  });
});
