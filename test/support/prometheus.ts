import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from './ports.ts';

export const PROMETHEUS = '/usr/bin/prometheus';

export interface RunningPrometheus {
  /** Base URL of its HTTP API on loopback. */
  readonly api: string;
  stop(): void;
}

/**
 * Debian's Prometheus on a loopback port, its config (`config`, written as prometheus.yml) and data
 * in `dir`; resolves once /-/ready answers, or throws with what it printed.
 */
export async function startPrometheus(dir: string, config: Record<string, unknown>): Promise<RunningPrometheus> {
  if (!existsSync(PROMETHEUS)) throw new Error(`prometheus is not installed at ${PROMETHEUS}: apt-get install prometheus (.ci/run does)`);
  const port = await freePort();
  const api = `http://127.0.0.1:${port}`;
  writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
  const child = spawn(PROMETHEUS, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
  const end = Date.now() + 30_000;
  for (;;) {
    try {
      if ((await fetch(`${api}/-/ready`)).ok) break;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null || Date.now() > end) {
      child.kill('SIGKILL');
      throw new Error(`prometheus did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { api, stop: () => void child.kill('SIGKILL') };
}
