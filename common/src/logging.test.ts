import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createRootLogger, jsonFieldWriter, redactQuery } from './logging.ts';

const LOGGING = join(import.meta.dirname, 'logging.ts');
const LINES = 3000;

// A child process logs LINES lines through the default (buffered) stdout destination, tells the
// parent on stderr, and is sent SIGTERM at once: the lines still sit in the buffer then.
function childScript(onSignal: string): string {
  return `
    import { createRootLogger } from ${JSON.stringify(LOGGING)};
    const log = createRootLogger({ process: 'test' }).child({ component: 'audit' });
    const keep = setInterval(() => undefined, 1000);
    process.on('SIGTERM', () => { ${onSignal} });
    for (let i = 0; i < ${LINES}; i++) log.info({ audit: true, n: i }, 'decision');
    process.stderr.write('logged\\n');
  `;
}

const dir = mkdtempSync(join(tmpdir(), 'airlock-logging-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function runUntilSigterm(name: string, onSignal: string): Promise<number[]> {
  const file = join(dir, `${name}.log`);
  const fd = openSync(file, 'w');
  const child = spawn(process.execPath, ['--input-type=module', '-e', childScript(onSignal)], { stdio: ['ignore', fd, 'pipe'] });
  closeSync(fd);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const stderr = child.stderr;
  if (stderr === null) throw new Error('no stderr pipe');
  await new Promise<void>((resolve, reject) => {
    stderr.on('data', (d: Buffer) => (d.toString().includes('logged') ? resolve() : reject(new Error(d.toString()))));
    child.once('exit', () => reject(new Error('child exited before logging')));
  });
  child.kill('SIGTERM');
  await exited;
  return readFileSync(file, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { n: number }).n);
}

describe('the default log destination', () => {
  const all = Array.from({ length: LINES }, (_, i) => i);

  it('loses no line written right before SIGTERM when the process exits on the signal', { timeout: 20_000 }, async () => {
    expect(await runUntilSigterm('exit', 'process.exit(0);')).toEqual(all);
  });

  it('loses no line when the process winds down on the signal (event loop empties)', { timeout: 20_000 }, async () => {
    // The CLI's way: the handler closes what keeps the process alive and the event loop ends.
    const lines = await runUntilSigterm('drain', 'clearInterval(keep);');
    expect(lines).toEqual(all);
  });

  it('loses no line when the process dies of an uncaught error after logging', { timeout: 20_000 }, async () => {
    expect(await runUntilSigterm('crash', "throw new Error('boom');")).toEqual(all);
  });
});

describe('the root logger', () => {
  function capture(): { lines: () => Record<string, unknown>[]; destination: { write(s: string): void } } {
    let out = '';
    return { destination: { write: (s: string) => void (out += s) }, lines: () => out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>) };
  }

  it('stamps each line with the ISO time of its own millisecond', async () => {
    const c = capture();
    const log = createRootLogger({ process: 'test', destination: c.destination });
    log.info('first');
    await new Promise((r) => setTimeout(r, 5));
    log.info('second');
    const [a, b] = c.lines().map((l) => String(l.time));
    expect(a).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Date.parse(b ?? '') - Date.parse(a ?? '')).toBeGreaterThanOrEqual(4);
  });

  it('redacts credentials by field name, in children too', () => {
    const c = capture();
    const log = createRootLogger({ process: 'test', destination: c.destination }).child({ component: 'x' });
    log.info({ token: 'SECRET-1', nested: { keyPem: 'SECRET-2' }, headers: { authorization: 'SECRET-3' } }, 'm');
    const line = JSON.stringify(c.lines()[0]);
    expect(line).not.toMatch(/SECRET/);
    expect(line).toContain('[redacted]');
  });
});

describe('redactQuery', () => {
  it.each([
    ['/v1/search', '/v1/search'],
    ['/v1/search?access_token=SECRET&q=x', '/v1/search?access_token=[redacted]&q=[redacted]'],
    ['/v1/search?SECRET', '/v1/search?[redacted]'], // a bare parameter may be the credential itself
    ['/v1/search?a=1&SECRET&=SECRET', '/v1/search?a=[redacted]&[redacted]&=[redacted]'],
    ['/v1/search?', '/v1/search?'],
    ['/v1/search?&&', '/v1/search?&&'],
    ['/v1/search?a=b=SECRET', '/v1/search?a=[redacted]'],
    ['/v1/search?q=x#SECRET', '/v1/search?q=[redacted]#[redacted]'],
    ['/v1/search#SECRET?x=1', '/v1/search#[redacted]'],
    ['/v1/a?b?SECRET', '/v1/a?[redacted]'],
  ])('%s → %s', (target, want) => {
    expect(redactQuery(target)).toBe(want);
    expect(redactQuery(target)).not.toContain('SECRET');
  });
});

describe('jsonFieldWriter', () => {
  const lines: string[] = [];
  const destination = { write: (line: string): void => void lines.push(line) };
  // The control plane's audit logger: a child with its component, info, no redaction.
  const audit = createRootLogger({ process: 'control-plane', level: 'warn', destination }).child({ component: 'audit' }, { level: 'info', redact: { paths: [] } });
  const event = { kind: 'decision', path: '/v1/"quoted"\\/é\u2028', n: 1.5, list: ['a'], nested: { b: true } };
  const withoutTime = (line: string): string => line.replace(/,"time":"[^"]*"/, '');

  it("writes, from the value's JSON, the line pino writes for the value (but its time)", () => {
    lines.length = 0;
    audit.info({ audit: event }, 'authorization "decision"');
    jsonFieldWriter(audit, 'audit', 'authorization "decision"')(JSON.stringify(event));
    expect(lines).toHaveLength(2);
    expect(withoutTime(lines[1] ?? '')).toBe(withoutTime(lines[0] ?? ''));
    expect(lines[1]).toMatch(/^\{"level":"info","time":"[^"]+","process":"control-plane",/);
    expect((JSON.parse(lines[1] ?? '') as { audit: unknown }).audit).toEqual(event);
  });

  it('writes nothing below its level, and through plain info for a logger it does not reproduce (a message prefix)', () => {
    lines.length = 0;
    jsonFieldWriter(createRootLogger({ process: 'p', level: 'warn', destination }), 'audit', 'm')(JSON.stringify(event));
    expect(lines).toHaveLength(0);
    const prefixed = createRootLogger({ process: 'p', destination }).child({}, { msgPrefix: '[x] ' });
    jsonFieldWriter(prefixed, 'audit', 'm')(JSON.stringify(event));
    expect(JSON.parse(lines[0] ?? '')).toMatchObject({ audit: event, msg: '[x] m' });
  });
});
