// The audit trail of a real control plane (decisions of real calls through sidecars, refusals,
// admin actions, a restart), checked by `airlock audit verify`; then the log edited, cut, reordered
// and its checkpoints forged, each caught with the first break named.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { IdentityServiceClient } from '@airlock/proto/identity/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCsr } from '../control-plane/src/ca/test-csr.ts';
import { CertificateAuthority } from '../control-plane/src/ca/ca.ts';
import { auditSchemaProblems } from '../control-plane/src/testing/audit-events.ts';
import { startMesh, type Mesh } from './support/mesh.ts';
import { AGENTS, STANDARD_POLICY } from './support/standard-mesh.ts';

const BIN = join(import.meta.dirname, '..', 'cli', 'bin', 'airlock.js');

function airlock(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

/** `airlock` with `input` on its stdin. */
function airlockWithStdin(args: string[], input: string): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.on('close', (code) => resolve({ code, stdout }));
    child.stdin.end(input);
  });
}

type Event = Record<string, unknown> & { kind: string; seq: number; chain: string };

describe('the audit trail of a real control plane', () => {
  let mesh: Mesh;
  let work: string;
  let bundle: string;
  let lines: string[];
  let log: string;
  let deniedDecision: string;
  /** The line number (from 1) of each audit event, by seq, in the first chain. */
  const audit = (): { line: number; event: Event }[] =>
    lines.flatMap((l, i) => {
      if (!l.includes('"audit"')) return [];
      const a = (JSON.parse(l) as { audit?: Event }).audit;
      return a === undefined ? [] : [{ line: i + 1, event: a }];
    });
  const write = (name: string, content: string[]): string => {
    const file = join(work, name);
    writeFileSync(file, content.join('\n'));
    return file;
  };
  const verify = (...args: string[]) => airlock(['audit', 'verify', '--trust-bundle', bundle, ...args]);

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'airlock-audit-e2e-'));
    mesh = await startMesh({ agents: AGENTS, policy: STANDARD_POLICY, controlPlaneArgs: ['--audit-checkpoint-every', '4', '--replica-name', 'cp-a'] });
    bundle = join(mesh.dataDir, 'trust-bundle.pem');
    // Allowed (decided on both sides), denied, with a query whose value must not be written.
    expect((await mesh.call('planner', 'GET', 'http://researcher.agents/v1/items?access_token=SECRET-1')).status).toBe(200);
    expect((await mesh.call('planner', 'POST', 'http://payments.agents/v1/charge')).status).toBe(200);
    const denied = await mesh.call('researcher', 'POST', 'http://payments.agents/v1/charge');
    expect(denied.status).toBe(403);
    deniedDecision = denied.json<{ decisionId: string }>().decisionId;
    // A refusal: a certificate asked for with a made-up join token.
    const client = new IdentityServiceClient(`127.0.0.1:${mesh.grpcPort}`, credentials.createSsl(readFileSync(bundle)), { 'grpc.ssl_target_name_override': 'localhost' });
    const refused = await new Promise<Error | null>((resolve) => client.signCertificate({ csrPem: makeCsr().csrPem, joinToken: 'made-up'.padEnd(43, 'x'), inboundAddress: '127.0.0.1:1' }, (err) => resolve(err)));
    client.close();
    expect(refused?.message).toMatch(/UNAUTHENTICATED/);
    // A restart: a second chain, naming the first.
    await mesh.stopControlPlane();
    await mesh.startControlPlane();
    await mesh.createJoinToken(`spiffe://${mesh.trustDomain}/ns/agents/sa/late`);
    await mesh.stopControlPlane();
    log = join(mesh.dir, 'control-plane.log');
    lines = readFileSync(log, 'utf8').split('\n');
  });
  afterAll(async () => {
    await mesh.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('verifies: two chains, every event conforming to docs/audit-event.schema.json, no secret written', async () => {
    const events = audit().map((a) => a.event);
    expect(lines.length).toBeGreaterThan(events.length); // other log lines are mixed in
    for (const e of events) expect({ seq: e.seq, kind: e.kind, problems: auditSchemaProblems(e) }).toEqual({ seq: e.seq, kind: e.kind, problems: [] });
    const kinds = new Set(events.map((e) => e.kind));
    expect(kinds).toEqual(new Set(['chain-start', 'decision', 'refusal', 'admin', 'checkpoint']));
    expect(events.find((e) => e.kind === 'refusal')).toMatchObject({ operation: 'SignCertificate', reasonCode: expect.any(String) as unknown, attestation: 'join_token' });
    expect(events.find((e) => e.decisionId === deniedDecision)).toMatchObject({ kind: 'decision', verdict: 'deny', replica: 'cp-a', direction: 'outbound', host: 'payments.agents' });
    expect(events.find((e) => e.kind === 'decision' && String(e.path).startsWith('/v1/items'))).toMatchObject({ path: '/v1/items?access_token=[redacted]' });
    expect(lines.join('\n')).not.toContain('SECRET-1');
    const chains = [...new Set(events.map((e) => e.chain))];
    expect(chains).toHaveLength(2);
    const lastOfFirst = events.filter((e) => e.chain === chains[0]).at(-1);
    expect(lastOfFirst?.kind).toBe('checkpoint');
    expect(events.find((e) => e.chain === chains[1])).toMatchObject({ kind: 'chain-start', seq: 0, previous: { chain: chains[0], seq: lastOfFirst?.seq } });

    const r = await verify(log);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^ok: ${events.length} audit event\\(s\\) in 2 chain\\(s\\)`));
    // From stdin too, as a collector's copy would be piped in.
    const piped = await airlockWithStdin(['audit', 'verify', '--trust-bundle', bundle, '-'], readFileSync(log, 'utf8'));
    expect(piped).toMatchObject({ code: 0, stdout: expect.stringMatching(/^ok: /) as unknown });
    const json = await verify('-o', 'json', log);
    expect(JSON.parse(json.stdout)).toMatchObject({ events: events.length, warnings: [] });
  });

  it('names an edited event: its file:line, seq, and what', async () => {
    const target = audit().find((a) => a.event.decisionId === deniedDecision);
    if (target === undefined) throw new Error('no audit event of the denied call');
    const edited = write('edited.log', lines.map((l, i) => (i + 1 === target.line ? l.replace('"verdict":"deny"', '"verdict":"allow"') : l)));
    const r = await verify(edited);
    expect(r.code).toBe(1);
    expect(r.stdout.split('\n')[0]).toBe(`broken: ${edited}:${target.line} seq ${target.event.seq} (chain ${target.event.chain}): seq ${target.event.seq} was altered: it does not hash to the prevHash of seq ${target.event.seq + 1} (${edited}:${(audit().find((a) => a.event.chain === target.event.chain && a.event.seq === target.event.seq + 1)?.line ?? 0)})`);
  });

  it('names a deleted event, and two events swapped', async () => {
    const [, second, third] = audit().filter((a) => a.event.kind === 'decision');
    if (second === undefined || third === undefined) throw new Error('too few decisions');
    const deleted = write('deleted.log', lines.filter((_, i) => i + 1 !== second.line));
    const d = await verify(deleted);
    expect(d.code).toBe(1);
    expect(d.stdout).toMatch(new RegExp(`^broken: ${deleted}:${second.line} seq ${second.event.seq + 1} .*: seq ${second.event.seq + 1} follows seq ${second.event.seq - 1} .*: 1 event\\(s\\) missing or moved`));
    const swapped = [...lines];
    swapped[second.line - 1] = lines[third.line - 1] ?? '';
    swapped[third.line - 1] = lines[second.line - 1] ?? '';
    const s = await verify(write('swapped.log', swapped));
    expect(s.code).toBe(1);
    expect(s.stdout).toMatch(/^broken: .*swapped\.log:\d+ seq \d+ .*(follows|comes after) seq/);
    // The tail cut after the last checkpoint cannot be told from a shorter log: verify says what is unsigned instead.
    const firstChain = audit()[0]?.event.chain;
    const cut = audit().filter((a) => a.event.chain === firstChain).at(-2);
    const tail = await verify(write('cut.log', lines.slice(0, cut?.line ?? 0)));
    expect(tail.code).toBe(0);
    expect(tail.stdout).toMatch(/warning: chain .*: the last \d+ event\(s\), up to seq \d+, come after its last signed checkpoint/);
  });

  it('catches a forged checkpoint signature, and a trust bundle the signer does not chain to', async () => {
    const checkpoint = audit().find((a) => a.event.kind === 'checkpoint');
    if (checkpoint === undefined) throw new Error('no checkpoint');
    const forged = lines.map((l, i) => {
      if (i + 1 !== checkpoint.line) return l;
      const parsed = JSON.parse(l) as { audit: { signature: { value: string } } };
      parsed.audit.signature.value = Buffer.from(parsed.audit.signature.value, 'base64').reverse().toString('base64');
      return JSON.stringify(parsed);
    });
    const f = await verify(write('forged.log', forged));
    expect(f.code).toBe(1);
    // Its hash changed too, but the signature is checked on the checkpoint's own line first.
    expect(f.stdout).toMatch(new RegExp(`^broken: .*forged\\.log:${checkpoint.line} seq ${checkpoint.event.seq} .*: checkpoint not valid: its signature does not verify`));
    const other = CertificateAuthority.loadOrCreate(join(work, 'other-ca'), mesh.trustDomain);
    const otherBundle = join(work, 'other-bundle.pem');
    writeFileSync(otherBundle, other.certPem);
    const wrongRoot = await airlock(['audit', 'verify', '--trust-bundle', otherBundle, log]);
    expect(wrongRoot.code).toBe(1);
    expect(wrongRoot.stdout).toMatch(new RegExp(`:${checkpoint.line} seq ${checkpoint.event.seq} .*checkpoint not valid: its signer certificate does not chain to the trust bundle given`));
  });

  it('answers bad input with exit code 2 and a clear message, and --help with 0', async () => {
    const help = await airlock(['audit', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Exit codes: 0 every chain holds, 1 a chain is broken');
    expect(await verify(join(work, 'missing.log'))).toMatchObject({ code: 2, stderr: expect.stringContaining(`cannot read ${join(work, 'missing.log')}: ENOENT`) as unknown });
    expect(await airlock(['audit', 'verify', log])).toMatchObject({ code: 2, stderr: expect.stringContaining('--trust-bundle FILE is required') as unknown });
    expect(await airlock(['audit', 'verify', '--trust-bundle', log, log])).toMatchObject({ code: 2, stderr: expect.stringContaining('holds no PEM certificate') as unknown });
    expect(await verify()).toMatchObject({ code: 2, stderr: expect.stringContaining('name at least one log file') as unknown });
    expect(await airlock(['audit', 'check', log])).toMatchObject({ code: 2, stderr: expect.stringContaining('expected `airlock audit verify') as unknown });
    const noAudit = write('other.log', ['{"level":"info","msg":"hello"}', 'not json']);
    expect(await verify(noAudit)).toMatchObject({ code: 2, stderr: expect.stringContaining('no audit event in the input') as unknown });
  });
});
