// Issue 15 item 5: each runbook in docs/runbooks/ runs as written. Its fenced `sh` blocks run in
// order in one bash (set -euo pipefail: a failing step stops it), against a real mesh, with the
// runbook's variables set; after (or before) some steps the test checks what the runbook says
// happens with real calls through the sidecars.
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMesh, type Mesh } from './support/mesh.ts';
import { AGENTS, STANDARD_POLICY } from './support/standard-mesh.ts';

const BIN = join(import.meta.dirname, '..', 'cli', 'bin', 'airlock.js');
const RUNBOOKS = join(import.meta.dirname, '..', 'docs', 'runbooks');

/** The fenced `sh` blocks of a runbook, in order. */
function shBlocks(file: string): string[] {
  return [...readFileSync(join(RUNBOOKS, file), 'utf8').matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? '');
}

interface Hook {
  /** Runs before the first block matching it (e.g. the loss the runbook recovers from). */
  readonly before?: RegExp;
  /** Runs after the first block matching it. */
  readonly after?: RegExp;
  readonly check: () => Promise<void>;
}

/** A bash that runs blocks one by one, keeping its variables between them, as an operator's terminal. */
class Shell {
  readonly #bash: ChildProcessWithoutNullStreams;
  #out = '';
  #err = '';
  #exit: number | null | undefined;
  readonly #waiters = new Set<() => void>();

  constructor(cwd: string, env: NodeJS.ProcessEnv) {
    this.#bash = spawn('bash', ['--noprofile', '--norc'], { cwd, env });
    this.#bash.stdout.on('data', (c: Buffer) => this.#wake(() => (this.#out += c.toString())));
    this.#bash.stderr.on('data', (c: Buffer) => this.#wake(() => (this.#err += c.toString())));
    if (process.env.DEBUG_RUNBOOK !== undefined) this.#bash.stderr.pipe(process.stderr);
    this.#bash.on('exit', (code) => this.#wake(() => (this.#exit = code)));
    this.#bash.stdin.write('set -euo pipefail\n');
  }

  #wake(f: () => void): void {
    f();
    for (const w of this.#waiters) w();
  }

  /** Runs `block`; resolves with its output, or rejects naming it when the shell stopped on a failure. */
  async run(block: string, n: number): Promise<string> {
    const from = this.#out.length;
    const marker = `::step-done ${n}`;
    this.#bash.stdin.write(`${block}\necho '${marker}'\n`);
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (this.#out.includes(marker, from)) {
          this.#waiters.delete(check);
          resolve();
        } else if (this.#exit !== undefined) {
          this.#waiters.delete(check);
          reject(new Error(`step ${n} failed (bash exit ${String(this.#exit)}):\n${block}\nstdout:\n${this.#out.slice(from)}\nstderr:\n${this.#err.slice(-3000)}`));
        }
      };
      this.#waiters.add(check);
      check();
    });
    return this.#out.slice(from, this.#out.indexOf(marker, from));
  }

  /** The pid of the last command started in the background ($!). */
  async lastBackgroundPid(): Promise<number> {
    return Number((await this.run('echo "$!"', -1)).trim());
  }

  close(): void {
    this.#bash.stdin.end();
    if (this.#exit === undefined) this.#bash.kill();
  }
}

function airlock(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

describe('the runbooks, run as written against a real mesh', () => {
  let mesh: Mesh;
  let env: NodeJS.ProcessEnv;
  let work: string;
  const background: number[] = [];

  beforeAll(async () => {
    // A short svidTtl: the CA rollover's retire is accepted once the old root's SVIDs expired.
    mesh = await startMesh({ agents: AGENTS, policy: STANDARD_POLICY, controlPlaneArgs: ['--svid-ttl', '20s'] });
    work = join(mesh.dir, 'operator');
    const bin = join(work, 'bin');
    mkdirSync(bin, { recursive: true });
    // `airlock` as an operator has it on PATH: the same CLI the tests run.
    writeFileSync(join(bin, 'airlock'), `#!/bin/sh\n${process.env.DEBUG_RUNBOOK !== undefined ? 'echo "+ airlock $*" >&2\n' : ''}exec '${process.execPath}' '${BIN}' "$@"\n`);
    chmodSync(join(bin, 'airlock'), 0o755);
    const credentials = join(work, 'credentials.json');
    writeFileSync(credentials, JSON.stringify(mesh.creds));
    const config = join(work, 'control-plane.yaml');
    writeFileSync(config, [
      `trustDomain: ${mesh.trustDomain}`,
      `dataDir: ${mesh.dataDir}`,
      `grpcListen: 127.0.0.1:${mesh.grpcPort}`,
      `httpListen: 127.0.0.1:${mesh.httpPort}`,
      `adminListen: 127.0.0.1:${mesh.adminPort}`,
      `policyFile: ${join(mesh.dir, 'policy.yaml')}`,
      'svidTtl: 20s',
      '',
    ].join('\n'));
    env = {
      ...process.env,
      PATH: `${bin}:${process.env.PATH ?? ''}`,
      AIRLOCK_CREDENTIALS: credentials,
      AGENT: mesh.agent('researcher').identity,
      PEER_HOST: 'payments.agents',
      REASON: 'runbook test: exfiltration suspected',
      CONTROL_PLANE_LOG: join(mesh.dir, 'control-plane.log'),
      TRUST_BUNDLE: join(mesh.dataDir, 'trust-bundle.pem'),
      SIDECAR_ADMIN: `127.0.0.1:${mesh.agent('planner').adminPort}`,
      DATA_DIR: mesh.dataDir,
      BACKUP_DIR: join(work, 'backup'),
      CONTROL_PLANE_CONFIG: config,
    };
  }, 90_000);
  afterAll(async () => {
    for (const pid of background) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    await mesh.close();
  });

  const status = async (from: string, method: string, url: string): Promise<{ status: number; reason: string }> => {
    const res = await mesh.call(from, method, url);
    return { status: res.status, reason: res.status === 403 ? res.json<{ reason: string }>().reason : '' };
  };

  /** Runs the runbook's blocks with the hooks; returns the shell (still open) and each block's output. */
  async function runRunbook(file: string, hooks: readonly Hook[]): Promise<{ shell: Shell; outputs: string[] }> {
    const blocks = shBlocks(file);
    expect(blocks.length, `${file} has sh blocks`).toBeGreaterThan(0);
    const shell = new Shell(work, env);
    const pending = new Set(hooks);
    const outputs: string[] = [];
    try {
      for (const [i, block] of blocks.entries()) {
        for (const h of [...pending].filter((x) => x.before?.test(block) === true)) {
          pending.delete(h);
          await h.check();
        }
        outputs.push(await shell.run(block, i));
        for (const h of [...pending].filter((x) => x.after?.test(block) === true)) {
          pending.delete(h);
          await h.check();
        }
      }
    } catch (err) {
      shell.close();
      throw err;
    }
    // Every check the test meant to make was made: a runbook that lost a step fails here.
    expect([...pending].map((h) => String(h.before ?? h.after))).toEqual([]);
    return { shell, outputs };
  }

  it('contain an agent: denied from the next call, incident and evidence kept, released', { timeout: 60_000 }, async () => {
    expect(await status('planner', 'GET', 'http://researcher.agents/v1/a')).toEqual({ status: 200, reason: '' });
    const { shell, outputs } = await runRunbook('contain-an-agent.md', [
      { after: /airlock quarantine "\$AGENT"/, check: async () => expect(await status('planner', 'GET', 'http://researcher.agents/v1/a')).toEqual({ status: 403, reason: 'quarantined' }) },
      { after: /airlock release "\$AGENT"/, check: async () => expect(await status('planner', 'GET', 'http://researcher.agents/v1/a')).toEqual({ status: 200, reason: '' }) },
    ]);
    shell.close();
    expect(outputs.join('\n')).toContain('exfiltration suspected');
    // The evidence file: the quarantine and the call it denied, naming the agent.
    const evidence = readdirJsonl(work, /^evidence-inc-.*\.jsonl$/);
    expect(evidence.some((e) => e.kind === 'admin' && e.action === 'agent.quarantine' && e.target === env.AGENT)).toBe(true);
    expect(evidence.some((e) => e.kind === 'decision' && e.reason === 'quarantined' && e.destination === env.AGENT)).toBe(true);
  });

  it('investigate: the trail verifies, the summary and the agent\'s events are printed', { timeout: 60_000 }, async () => {
    const { shell, outputs } = await runRunbook('investigate.md', []);
    shell.close();
    expect(outputs[0]).toMatch(/^ok: \d+ audit event\(s\)/);
    expect(outputs[1]).toMatch(/quarantines\s+1 set, 1 released/);
    expect(outputs[3]).toContain('quarantined');
    expect(outputs[3]).toContain('agent.release');
    const evidence = readFileSync(join(work, 'evidence.jsonl'), 'utf8').trim().split('\n');
    expect(evidence.length).toBeGreaterThan(2);
  });

  it('rotate the CA: a new root issues, the old one is retired, calls go on', { timeout: 120_000 }, async () => {
    const before = JSON.parse((await airlock(['ca', 'status', '-o', 'json'], env)).stdout) as { roots: { id: string; state: string }[] };
    const { shell } = await runRunbook('rotate-the-ca.md', [
      { after: /airlock ca activate/, check: async () => expect((await status('planner', 'GET', 'http://researcher.agents/v1/a')).status).toBe(200) },
      { after: /airlock ca retire/, check: async () => expect((await status('planner', 'GET', 'http://researcher.agents/v1/a')).status).toBe(200) },
    ]);
    shell.close();
    const after = JSON.parse((await airlock(['ca', 'status', '-o', 'json'], env)).stdout) as { roots: { id: string; state: string }[] };
    const old = before.roots.find((r) => r.state === 'active');
    expect(after.roots.find((r) => r.id === old?.id)?.state).toBe('retired');
    expect(after.roots.filter((r) => r.state === 'active').map((r) => r.id)).not.toContain(old?.id);
  });

  it('recover a lost control plane: backed up, lost with its data dir, restored and deciding again', { timeout: 120_000 }, async () => {
    // State the restore must bring back: a quarantine set before the backup.
    expect((await airlock(['quarantine', 'spiffe://e2e.test/ns/agents/sa/payments', '--reason', 'before the backup'], env)).code).toBe(0);
    const { shell } = await runRunbook('recover-a-lost-control-plane.md', [
      {
        // The loss: the process and its data directory gone; calls fail closed meanwhile.
        before: /mkdir -p "\$DATA_DIR"/,
        check: async () => {
          await mesh.stopControlPlane();
          rmSync(mesh.dataDir, { recursive: true, force: true });
          expect((await status('planner', 'GET', 'http://researcher.agents/v1/a')).status).toBe(503);
        },
      },
    ]);
    background.push(await shell.lastBackgroundPid());
    shell.close();
    // Deciding again, with the state it had: policy allows, the quarantine holds.
    expect(await status('planner', 'GET', 'http://researcher.agents/v1/a')).toEqual({ status: 200, reason: '' });
    expect(await status('planner', 'POST', 'http://payments.agents/v1/charge')).toEqual({ status: 403, reason: 'quarantined' });
  });
});

function readdirJsonl(dir: string, name: RegExp): Record<string, unknown>[] {
  const file = readdirSync(dir).find((f) => name.test(f));
  if (file === undefined) throw new Error(`no file matching ${String(name)} in ${dir}`);
  return readFileSync(join(dir, file), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}
