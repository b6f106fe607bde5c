import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EchoBody } from '../cli/src/demo/echo-app.ts';
import { viaProxy } from './support/proxy-client.ts';

/** `npm start` runs `airlock demo` on the fixed ports of the README; these are the README's curls. */
describe('airlock demo', () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'airlock-demo-')), '.airlock');
  const demo = spawn(process.execPath, [join(import.meta.dirname, '..', 'cli', 'bin', 'airlock.js'), 'demo', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = new Promise<number | null>((resolve) => demo.once('exit', (code) => resolve(code)));

  beforeAll(async () => {
    demo.stdout.on('data', (d: Buffer) => (output += d.toString()));
    demo.stderr.on('data', (d: Buffer) => (output += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (output.includes('Airlock demo is up')) {
          clearInterval(timer);
          resolve();
        }
      }, 100);
      void exited.then((code) => {
        clearInterval(timer);
        reject(new Error(`demo exited (${String(code)}) before it was up:\n${output}`));
      });
    });
  }, 60_000);
  afterAll(() => {
    if (demo.exitCode === null) demo.kill('SIGKILL');
  });

  it('prints the agent table and the curls to try', () => {
    expect(output).toContain('| researcher | 127.0.0.1:15101 | 15106   | 18082 | 15120  | spiffe://airlock.demo/ns/demo/sa/researcher');
    expect(output).toContain('curl -x http://127.0.0.1:15001 http://researcher.demo/v1/search');
  });

  it('lets planner GET researcher, and researcher sees planner in XFCC', async () => {
    const res = await viaProxy(15001, 'GET', 'http://researcher.demo/v1/search');
    expect(res.status).toBe(200);
    const body = res.json<EchoBody>();
    expect(body).toMatchObject({ agent: 'researcher', method: 'GET', path: '/v1/search' });
    expect(body.headers['x-forwarded-client-cert']).toBe('By=spiffe://airlock.demo/ns/demo/sa/researcher;URI=spiffe://airlock.demo/ns/demo/sa/planner');
  });

  it('refuses researcher → payments with 403 JSON', async () => {
    const res = await viaProxy(15101, 'POST', 'http://payments.demo/v1/charge');
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({
      error: 'denied',
      reason: 'no policy allows POST /v1/charge from spiffe://airlock.demo/ns/demo/sa/researcher to payments.demo:80',
      policy: '',
    });
  });

  it('lets planner POST /v1/charge to payments but not GET it', async () => {
    expect((await viaProxy(15001, 'POST', 'http://payments.demo/v1/charge')).json<EchoBody>().agent).toBe('payments');
    expect((await viaProxy(15001, 'GET', 'http://payments.demo/v1/charge')).status).toBe(403);
  });

  it('writes admin credentials only its owner can read', () => {
    expect(statSync(join(dir, 'credentials.json')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'control-plane', 'ca.key')).mode & 0o777).toBe(0o600);
  });

  it('lets `airlock token create` in that directory reach the admin API over HTTPS with no extra flags', async () => {
    expect(JSON.parse(readFileSync(join(dir, 'credentials.json'), 'utf8'))).toMatchObject({ server: 'https://127.0.0.1:15013', caFile: join('control-plane', 'trust-bundle.pem') });
    const env = { ...process.env, AIRLOCK_CREDENTIALS: '', AIRLOCK_SERVER: '', AIRLOCK_CA_FILE: '' };
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [join(import.meta.dirname, '..', 'cli', 'bin', 'airlock.js'), 'token', 'create', '--identity', 'spiffe://airlock.demo/ns/demo/sa/summarizer'], { cwd: dirname(dir), env, timeout: 20_000 }, (err, stdout, stderr) =>
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr }),
      );
    });
    expect(r.stderr).toContain('spiffe://airlock.demo/ns/demo/sa/summarizer');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().length).toBeGreaterThan(20);
    // Prometheus and probes: plain HTTP on :15014, which serves no admin route.
    expect((await fetch('http://127.0.0.1:15014/metrics')).status).toBe(200);
    expect((await fetch('http://127.0.0.1:15014/v1/join-tokens')).status).toBe(404);
  });

  it('stops every process it started on Ctrl-C', async () => {
    demo.kill('SIGINT');
    expect(await exited).toBe(0);
    await expect(viaProxy(15001, 'GET', 'http://researcher.demo/v1/search')).rejects.toThrow(/ECONNREFUSED/);
    await expect(fetch('http://127.0.0.1:15014/healthz')).rejects.toThrow();
  });
});
