// images/airlock/Dockerfile without Docker (no engine runs here): the build stage's COPY and RUN
// steps are replayed from the file itself into a temp dir standing for /app (npm ci --omit=dev from
// the npm cache, the compile-cache warm-up), then the image's ENTRYPOINT runs `control-plane` as the
// image's numeric USER (when the test runs as root) and answers /healthz. Dev dependencies must be absent.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '..');
const IMAGE_DIR = join(REPO, 'images', 'airlock');

interface Dockerfile {
  /** The build stage's steps, in order. */
  readonly build: readonly ({ kind: 'copy'; sources: string[]; dest: string } | { kind: 'run'; command: string })[];
  readonly entrypoint: readonly string[];
  readonly user: string;
}

function parseDockerfile(text: string): Dockerfile {
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const stages: string[][] = [];
  for (const l of lines) {
    if (l.startsWith('FROM ')) stages.push([l]);
    else stages.at(-1)?.push(l);
  }
  const [build, final] = stages;
  if (build === undefined || final === undefined || !/ AS build$/.test(build[0] ?? '')) throw new Error('expected a build stage and a run stage');
  const steps: Dockerfile['build'][number][] = [];
  for (const l of build.slice(1)) {
    const [instruction, ...rest] = l.split(/\s+/);
    if (instruction === 'COPY') steps.push({ kind: 'copy', sources: rest.slice(0, -1), dest: rest.at(-1) ?? '' });
    else if (instruction === 'RUN') steps.push({ kind: 'run', command: l.slice(4) });
    else if (instruction !== 'WORKDIR') throw new Error(`the test does not replay ${l}`);
  }
  const value = (name: string): string => final.find((l) => l.startsWith(`${name} `))?.slice(name.length + 1) ?? '';
  return { build: steps, entrypoint: JSON.parse(value('ENTRYPOINT')) as string[], user: value('USER') };
}

/** What Dockerfile.dockerignore leaves out of the sources copied. */
const ignored = (path: string): boolean => /(^|\/)(node_modules|testing)(\/|$)|\.test\.ts$/.test(path);

describe('the airlock image, its install steps replayed', () => {
  const root = mkdtempSync(join(tmpdir(), 'airlock-image-'));
  const app = join(root, 'app');
  const dockerfile = parseDockerfile(readFileSync(join(IMAGE_DIR, 'Dockerfile'), 'utf8'));
  // The pinned Node 24 stands for the image's; npm runs under it.
  // What reaching the registry needs on this machine (a CA bundle, a proxy) passes through, nothing else.
  const reach = Object.fromEntries(Object.entries(process.env).filter(([k]) => /^(NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|https?_proxy|HTTPS?_PROXY|NO_PROXY|no_proxy|npm_config_(cafile|registry|proxy|https_proxy))$/.test(k)));
  const env = { ...reach, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`, HOME: process.env.HOME ?? root, npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false' };

  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('is a non-root numeric user, an exec-form entrypoint, and dockerignore rules the test applies', () => {
    expect(dockerfile.user).toMatch(/^\d+:\d+$/);
    expect(Number(dockerfile.user.split(':')[0])).toBeGreaterThan(0);
    expect(dockerfile.entrypoint).toEqual(['node', '/app/cli/bin/airlock.js']);
    expect(readFileSync(join(IMAGE_DIR, 'Dockerfile.dockerignore'), 'utf8').split('\n').filter((l) => l !== '' && !l.startsWith('#'))).toEqual(['**/node_modules', '**/*.test.ts', '**/testing']);
  });

  it('installs production dependencies only, and starts the control plane, which answers /healthz', async () => {
    mkdirSync(app, { recursive: true });
    for (const step of dockerfile.build) {
      if (step.kind === 'copy') {
        for (const source of step.sources) {
          const to = step.dest.endsWith('/') ? join(app, step.dest, basename(source)) : join(app, step.dest);
          cpSync(join(REPO, source), to, { recursive: true, filter: (from) => !ignored(from.slice(REPO.length + 1)) });
        }
      } else {
        const r = spawnSync('sh', ['-c', step.command], { cwd: app, env, encoding: 'utf8', timeout: 120_000 });
        expect(r.status, `RUN ${step.command}\n${r.stderr}`).toBe(0);
      }
    }
    const modules = join(app, 'node_modules');
    // The lockfile marks what only development needs (ours and theirs): none of it, all of the rest.
    const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; optional?: boolean; link?: boolean }> };
    const installed = Object.entries(lock.packages).filter(([path]) => path.startsWith('node_modules/'));
    const dev = installed.filter(([, p]) => p.dev === true).map(([path]) => path);
    expect(dev).toContain('node_modules/vitest');
    for (const path of dev) expect(existsSync(join(app, path)), `dev dependency ${path} installed`).toBe(false);
    for (const [path] of installed.filter(([, p]) => p.dev !== true && p.optional !== true)) expect(existsSync(join(app, path)), `dependency ${path} missing`).toBe(true);
    expect(spawnSync('find', [app, '-path', join(app, 'node_modules'), '-prune', '-o', '(', '-name', '*.test.ts', '-o', '-name', 'testing', ')', '-print'], { encoding: 'utf8' }).stdout).toBe('');
    // Warmed at build time.
    const cache = join(modules, '.cache', 'node-compile-cache');
    expect(readdirSync(cache).flatMap((d) => readdirSync(join(cache, d))).length).toBeGreaterThan(100);

    // The entrypoint, as the image's USER when we can switch to it; /app stays root's (read-only to it).
    const [uid, gid] = dockerfile.user.split(':').map(Number);
    const asRoot = process.getuid?.() === 0;
    const data = join(root, 'data');
    mkdirSync(data);
    chmodSync(root, 0o755);
    if (asRoot) chownSync(data, uid ?? 0, gid ?? 0);
    const [command = '', ...args] = dockerfile.entrypoint.map((a) => a.replace(/^\/app\//, `${app}/`));
    const child = spawn(command, [...args, 'control-plane', '--data-dir', join(data, 'control-plane'), '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0'], {
      cwd: app,
      env: { PATH: env.PATH, HOME: data },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(asRoot ? { uid, gid } : {}),
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    try {
      const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`the control plane exited (${String(code)}): ${stderr}`)));
        createInterface({ input: child.stdout }).on('line', (line) => {
          const entry = line.startsWith('{') ? (JSON.parse(line) as Record<string, unknown>) : {};
          if (entry.msg === 'control plane ready') resolve(entry);
        });
      });
      const res = await fetch(`http://127.0.0.1:${String(ready.httpPort)}/healthz`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok' });
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  }, 180_000);
});
