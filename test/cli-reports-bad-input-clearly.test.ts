import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const BIN = join(import.meta.dirname, '..', 'cli', 'bin', 'airlock.js');

function airlock(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, cwd: mkdtempSync(join(tmpdir(), 'airlock-cli-')), timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

describe('the airlock CLI', () => {
  it('never sends the admin token in clear text off this machine, unless told a TLS proxy is in between', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-cli-plain-'));
    try {
      const creds = join(dir, 'credentials.json');
      // 192.0.2.1 (TEST-NET-1): refused before any connection is attempted; in a network namespace of
      // its own, so that even a regression could not send the token anywhere.
      writeFileSync(creds, JSON.stringify({ server: 'http://192.0.2.1:15013', token: 'x'.repeat(43) }));
      const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile('unshare', ['-n', process.execPath, BIN, 'token', 'list'], { env: { ...process.env, AIRLOCK_CREDENTIALS: creds }, timeout: 20_000 }, (err, _stdout, stderr) => {
          resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stderr });
        });
      });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('refusing to send the admin token in clear text to http://192.0.2.1:15013');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says which etcd it cannot reach, at start, without a stack trace', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-cli-etcd-'));
    try {
      const args = ['control-plane', '--data-dir', join(dir, 'data'), '--store', 'etcd://127.0.0.1:1', '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'];
      // Self-made roots on etcd need the key that seals them in the store: said before anything is dialled.
      const noKek = await airlock(args);
      expect(noKek.code).toBe(2);
      expect(noKek.stderr).toContain('store etcd with self-made roots needs caKeyEncryptionKeyFile');
      writeFileSync(join(dir, 'kek'), randomBytes(32).toString('base64'));
      // Port 1 on loopback: nothing listens there.
      const r = await airlock([...args, '--ca-key-encryption-key-file', join(dir, 'kek')]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('cannot reach etcd at http://127.0.0.1:1');
      expect(r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([[['--help']], [['control-plane', '--help']], [['sidecar', '--help']], [['demo', '--help']], [['token', '--help']]])(
    '%j prints usage and exits 0',
    async (args) => {
      const r = await airlock(args);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Usage: airlock/);
    },
  );

  it('documents every setting in --help', async () => {
    const r = await airlock(['sidecar', '--help']);
    expect(r.stdout).toContain('`--authz-timeout`');
    expect(r.stdout).toContain('`AIRLOCK_AUTHZ_TIMEOUT`');
  });

  it.each([
    [['frobnicate'], 'unknown command "frobnicate"'],
    [['sidecar', '--no-such-flag'], "Unknown option '--no-such-flag'"],
    [['sidecar', '--ca-file', '/x', '--authz-timeout', 'soon'], '--authz-timeout: expected a duration'],
    [['sidecar', '--outbound-listen', 'nope'], '--outbound-listen: expected host:port'],
    [['sidecar', '--join-token', 't'], 'caFile (or caPem) is required'],
    [['control-plane', '--config', '/does/not/exist.yaml'], 'cannot read config file /does/not/exist.yaml: ENOENT'],
    [['control-plane', '--store', 'mysql://db:3306'], '--store: expected sqlite, sqlite:DIR or etcd://host:port'],
    [['token', 'create'], '--identity is required'],
    [['token', 'create', '--identity', 'spiffe://x/y'], 'is not a valid SPIFFE ID'],
    [['token', 'create', '--identity', 'spiffe://airlock.demo/ns/demo/sa/x'], 'no admin credentials'],
    [['token', 'create', '--identity', 'spiffe://airlock.demo/ns/demo/sa/x', '--label', 'team'], '--label: a label is KEY=VALUE'],
    [['token', 'create', '--identity', 'spiffe://airlock.demo/ns/demo/sa/x', '--label', 'team=two words'], '--label: label value "two words"'],
    [['explain', '--from', 'spiffe://airlock.demo/ns/demo/sa/x', '--to', 'a.demo', '--header', 'x-tenant'], '--header takes NAME=VALUE'],
  ])('%j fails with a clear message and no stack trace', async (args, message) => {
    const r = await airlock(args, { AIRLOCK_CREDENTIALS: '' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('reports a bad policy file with its location and exits 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'airlock-cli-'));
    const policy = join(dir, 'policy.yaml');
    await import('node:fs').then((fs) => fs.writeFileSync(policy, 'apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  from: { segments: [missing] }\n  action: allow\n'));
    const r = await airlock(['control-plane', '--data-dir', join(dir, 'data'), '--grpc-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--policy-file', policy]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('missing');
    expect(r.stderr).toContain('policy.yaml');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
