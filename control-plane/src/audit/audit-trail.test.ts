import { spawnSync } from 'node:child_process';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRootLogger } from '@airlock/common/logging';
import { CertificateAuthority } from '../ca/ca.ts';
import { makeCsr } from '../ca/test-csr.ts';
import { controlPlaneSpiffeId } from '../main.ts';
import { auditSchemaProblems } from '../testing/audit-events.ts';
import { AuditTrail, decisionEvent } from './audit-trail.ts';
import { canonicalJson, hashEvent } from './canonical.ts';
import { signCheckpoint, type CheckpointSigner } from './checkpoint-signature.ts';
import type { DecisionRecord } from './event.ts';
import { verifyAuditChains } from './verify-chain.ts';

const TD = 'airlock.test';
const DECISION: DecisionRecord = {
  decisionId: '9b2f8a56-3f43-4c5e-9a7e-2f1f3c1f0a11',
  direction: 'outbound',
  source: `spiffe://${TD}/ns/agents/sa/planner`,
  sourceSegments: ['planners'],
  destination: '',
  destinationSegments: [],
  host: 'api.example.com',
  port: 443,
  method: 'GET',
  path: '/v1/items?key=[redacted]',
  mcp: { method: 'tools/call', tool: 'search' },
  verdict: 'allow',
  mode: 'enforce',
  policyVersion: 3,
  policy: 'planners-to-example',
  rule: 'rules[0]',
  reason: 'allowed by policy planners-to-example',
  latencyMs: 0.042,
};

describe('the audit trail', () => {
  let dir: string;
  let ca: CertificateAuthority;
  let signer: CheckpointSigner;
  let roots: X509Certificate[];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'airlock-audit-'));
    ca = CertificateAuthority.loadOrCreate(dir, TD);
    const serving = ca.issueServingCertificate(controlPlaneSpiffeId(TD), 3_600_000);
    signer = { keyPem: serving.keyPem, chainPem: serving.chainPem };
    roots = [new X509Certificate(ca.certPem)];
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A trail writing into `lines`; `every` events per checkpoint. */
  function trail(lines: string[], o: { every?: number; stateFile?: string; signer?: CheckpointSigner } = {}): AuditTrail {
    const logger = createRootLogger({ process: 'control-plane', level: 'error', destination: { write: (s: string) => lines.push(s.trimEnd()) } });
    return new AuditTrail({ logger: logger.child({ component: 'audit' }, { level: 'info' }), log: logger, replica: 'cp-0', signer: () => o.signer ?? signer, checkpointEvery: o.every ?? 3, checkpointIntervalMs: 3_600_000, ...(o.stateFile === undefined ? {} : { stateFile: o.stateFile }) });
  }

  /** A chain of a decision, a refusal and an admin action, then a few decisions, closed. */
  async function recorded(o: { every?: number; stateFile?: string } = {}): Promise<string[]> {
    const lines: string[] = ['{"level":"info","msg":"not an audit line"}', 'plain text from somewhere else'];
    const t = trail(lines, o);
    t.decision(DECISION);
    t.refusal({ operation: 'Authorize', reasonCode: 'permission_denied', reason: 'the source of an OUTBOUND request must be the caller', caller: DECISION.source, decisionId: DECISION.decisionId, request: { direction: 'outbound', source: 'spiffe://airlock.test/ns/agents/sa/other', destination: '', host: 'h', port: 80, method: 'GET', path: '/' } });
    t.admin({ actor: 'admin-token', role: 'admin', action: 'join-token.create', target: DECISION.source, detail: { id: 'abc', labels: {} } });
    for (let i = 0; i < 4; i++) t.decision({ ...DECISION, verdict: 'deny', policy: '', rule: '', reason: 'no policy allows it' });
    await t.close();
    return lines;
  }

  const events = (lines: readonly string[]): Record<string, unknown>[] => lines.filter((l) => l.includes('"audit"')).map((l) => (JSON.parse(l) as { audit: Record<string, unknown> }).audit);
  const verify = (lines: readonly string[], partial = false) => verifyAuditChains([{ name: 'cp.log', text: lines.join('\n') }], { roots, partial });

  it('links every event to the one before by seq and hash, checkpoints every N events and when closed, and each event conforms to the schema', async () => {
    const lines = await recorded();
    const es = events(lines);
    expect(es.map((e) => e.kind)).toEqual(['chain-start', 'decision', 'refusal', 'checkpoint', 'admin', 'decision', 'decision', 'checkpoint', 'decision', 'decision', 'checkpoint']);
    es.forEach((e, i) => {
      expect(e.seq).toBe(i);
      if (i > 0) expect(e.prevHash).toBe(hashEvent(es[i - 1] ?? {}));
      expect(auditSchemaProblems(e)).toEqual([]);
    });
    expect(verify(lines)).toMatchObject({ events: 11, warnings: [], chains: [{ replica: 'cp-0', firstSeq: 0, lastSeq: 10, checkpoints: 3, unsigned: 0 }] });
    expect(verify(lines).broken).toBeUndefined();
  });

  it('writes a decision (the hot path, hashed without a sorting pass) in its canonical form, every optional field set or not', () => {
    const envelope = { schemaVersion: 1, id: '00000000-0000-4000-8000-000000000001', time: '2026-12-04T00:00:00.000Z', replica: 'r', chain: '00000000-0000-4000-8000-000000000002', seq: 7, prevHash: '0'.repeat(64) } as const;
    const full = {
      ...DECISION,
      mcp: { unreadable: 'u', tool: 't', method: 'm', listedTools: 2, allowedTools: ['a', 'b'], headerMismatch: 'h', arguments: [{ value: '[redacted]', path: 'amount' }] },
      inspected: true,
      tls: 'inspect' as const,
    };
    for (const r of [DECISION, full, { ...DECISION, mcp: undefined }]) {
      const e = decisionEvent(envelope, r);
      expect(JSON.stringify(e)).toBe(canonicalJson(e));
      expect(canonicalJson(JSON.parse(JSON.stringify(e)))).toBe(JSON.stringify(e));
      expect(auditSchemaProblems(JSON.parse(JSON.stringify(e)))).toEqual([]);
    }
  });

  it('a restart starts a new chain naming the last checkpoint of the one before; the pair verifies, the second alone only as partial', async () => {
    const stateFile = join(dir, 'audit-chain.json');
    const first = await recorded({ stateFile });
    const second = await recorded({ stateFile });
    const start = events(second)[0];
    const last = events(first).at(-1) ?? {};
    expect(start?.previous).toEqual({ chain: last.chain, seq: last.seq, hash: hashEvent(last) });
    expect(verify([...first, ...second]).broken).toBeUndefined();
    expect(verify(second).broken).toMatchObject({ line: 3, seq: 0, what: expect.stringContaining(`the previous chain it names (${String(last.chain)}, up to seq 10) is not in the input`) as unknown });
    expect(verify(second, true).broken).toBeUndefined();
    expect(verify(second, true).warnings).toEqual([expect.stringContaining('not in the input')]);
  });

  describe('names the first break', () => {
    let lines: string[] = [];
    beforeAll(async () => {
      lines = await recorded();
      expect(events(lines).filter((e) => e.kind === 'checkpoint')).toHaveLength(3);
    });
    const lineOf = (seq: number): number => lines.findIndex((l) => l.includes(`"seq":${seq},`)) + 1;

    it('an edited event (its successor names another hash)', () => {
      const edited = lines.map((l, i) => (i + 1 === lineOf(5) ? l.replace('"verdict":"deny"', '"verdict":"allow"') : l));
      expect(verify(edited).broken).toEqual({ file: 'cp.log', line: lineOf(5), chain: events(lines)[0]?.chain, seq: 5, what: `seq 5 was altered: it does not hash to the prevHash of seq 6 (cp.log:${lineOf(6)})` });
    });

    it('a deleted event', () => {
      const deleted = lines.filter((_, i) => i + 1 !== lineOf(5));
      expect(verify(deleted).broken).toMatchObject({ line: lineOf(6) - 1, seq: 6, what: expect.stringMatching(/^seq 6 follows seq 4 .*: 1 event\(s\) missing or moved$/) as unknown });
    });

    it('two events swapped', () => {
      const swapped = [...lines];
      [swapped[lineOf(5) - 1], swapped[lineOf(6) - 1]] = [lines[lineOf(6) - 1] ?? '', lines[lineOf(5) - 1] ?? ''];
      expect(verify(swapped).broken).toMatchObject({ line: lineOf(5), seq: 6, what: expect.stringContaining('seq 6 follows seq 4') as unknown });
    });

    it('the first events cut off, or an audit line cut in half', () => {
      expect(verify(lines.filter((_, i) => i + 1 !== lineOf(0))).broken).toMatchObject({ seq: 1, what: expect.stringContaining('begins at seq 1') as unknown });
      const cut = lines.map((l, i) => (i + 1 === lineOf(2) ? l.slice(0, 200) : l));
      expect(verify(cut).broken).toMatchObject({ line: lineOf(2), what: 'an audit line that is not JSON (altered or cut)' });
    });

    /** Removes seq 5 and rewrites every later seq and prevHash, as one who knows the scheme would. */
    function rechained(sign: (unsigned: Record<string, unknown>) => Record<string, unknown>): string[] {
      const es = events(lines).filter((e) => e.seq !== 5);
      let prev = '';
      return es.map((e, i) => {
        let next: Record<string, unknown> = { ...e, seq: i, ...(i === 0 ? {} : { prevHash: prev }) };
        if (next.kind === 'checkpoint' && (e.seq as number) > 5) {
          const unsigned = { ...next };
          delete unsigned.signature;
          next = sign(unsigned);
        }
        prev = hashEvent(next);
        return JSON.stringify({ level: 'info', audit: next });
      });
    }

    it('a chain rewritten after a deletion: its checkpoint signature no longer holds', () => {
      const kept = rechained((unsigned) => ({ ...unsigned, signature: (events(lines).find((e) => e.seq === 7) as { signature: unknown }).signature }));
      expect(verify(kept).broken).toMatchObject({ seq: 6, what: expect.stringContaining('its signature does not verify') as unknown });
    });

    it('a checkpoint re-signed with a key of its own, with an agent SVID of the same CA, or by a look-alike root', () => {
      // A self-made certificate claiming the control plane's SPIFFE ID.
      const other = CertificateAuthority.loadOrCreate(mkdtempSync(join(tmpdir(), 'airlock-audit-other-')), TD);
      const lookAlike = other.issueServingCertificate(controlPlaneSpiffeId(TD), 3_600_000);
      const byOther = rechained((u) => ({ ...u, signature: signCheckpoint(u, { keyPem: lookAlike.keyPem, chainPem: lookAlike.chainPem }) }));
      expect(verify(byOther).broken).toMatchObject({ seq: 6, what: 'checkpoint not valid: its signer certificate does not chain to the trust bundle given' });
      // An agent's real SVID: it chains to the bundle, but no agent may sign for the control plane.
      const { csrPem, keyPem } = makeCsr();
      const agent = ca.issueSvid(csrPem, `spiffe://${TD}/ns/agents/sa/planner`, 3_600_000);
      const byAgent = rechained((u) => ({ ...u, signature: signCheckpoint(u, { keyPem, chainPem: agent.chainPem }) }));
      expect(verify(byAgent).broken).toMatchObject({ seq: 6, what: `checkpoint not valid: it is signed by spiffe://${TD}/ns/agents/sa/planner, not by a control plane` });
      // A bare signature value swapped for random bytes.
      const garbage = rechained((u) => ({ ...u, signature: { ...signCheckpoint(u, signer), value: Buffer.alloc(256, 7).toString('base64') } }));
      expect(verify(garbage).broken).toMatchObject({ seq: 6, what: expect.stringContaining('its signature does not verify') as unknown });
      // The honest signer re-signing the rewritten chain would pass: the key is what vouches.
      expect(verify(rechained((u) => ({ ...u, signature: signCheckpoint(u, signer) }))).broken).toBeUndefined();
    });
  });

  it('signs with an ECDSA P-256 key too; with no key yet, checkpoints wait for one', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const ecSvid = ca.issueSvid({ publicKey: publicKey.export({ type: 'spki', format: 'der' }) }, controlPlaneSpiffeId(TD), 3_600_000);
    const lines: string[] = [];
    const held: { signer?: CheckpointSigner } = {};
    const logger = createRootLogger({ process: 'control-plane', level: 'error', destination: { write: (s: string) => lines.push(s.trimEnd()) } });
    const t = new AuditTrail({ logger: logger.child({ component: 'audit' }, { level: 'info' }), log: logger, replica: 'cp-0', signer: () => held.signer, checkpointEvery: 2, checkpointIntervalMs: 3_600_000 });
    t.decision(DECISION);
    t.decision(DECISION);
    expect(events(lines).map((e) => e.kind)).toEqual(['chain-start', 'decision', 'decision']);
    held.signer = { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), chainPem: ecSvid.chainPem };
    t.decision(DECISION);
    await t.close();
    expect(events(lines).map((e) => e.kind)).toEqual(['chain-start', 'decision', 'decision', 'decision', 'checkpoint']);
    expect((events(lines)[4]?.signature as { alg: string }).alg).toBe('ES256');
    expect(verify(lines).broken).toBeUndefined();
    expect(verify(lines).warnings).toEqual([]);
  });

  describe('a checkpoint is signed off the event loop', () => {
    const kinds = (lines: readonly string[]): unknown[] => events(lines).map((e) => e.kind);

    it('checkpoint() returns before its signature exists; events recorded meanwhile are linked after it, in order, and the chain verifies', async () => {
      const lines: string[] = [];
      const t = trail(lines, { every: 2 });
      t.decision(DECISION);
      // The second event starts the checkpoint: its line is not there yet, nor are the events after it.
      t.decision(DECISION);
      t.admin({ actor: 'a', action: 'policy.apply', target: '7', detail: {} });
      t.decision({ ...DECISION, verdict: 'deny' });
      expect(kinds(lines)).toEqual(['chain-start', 'decision']);
      await t.close();
      // chain-start counts: a checkpoint after the first decision, then every two events.
      expect(kinds(lines)).toEqual(['chain-start', 'decision', 'checkpoint', 'decision', 'admin', 'checkpoint', 'decision', 'checkpoint']);
      events(lines).forEach((e, i) => expect(e.seq).toBe(i));
      expect(verify(lines)).toMatchObject({ warnings: [], chains: [{ checkpoints: 3, unsigned: 0 }] });
      expect(verify(lines).broken).toBeUndefined();
    });

    it('on exit while one is being signed, it is finished on the spot: no waiting event is lost, the chain verifies', () => {
      const lines: string[] = [];
      const t = trail(lines, { every: 2 });
      for (let i = 0; i < 5; i++) t.decision(DECISION);
      expect(kinds(lines)).toEqual(['chain-start', 'decision']);
      t.finishSync(); // what the process's exit listener calls
      // Every checkpoint the waiting events start is finished too (the last one by the last two decisions).
      const finished = ['chain-start', 'decision', 'checkpoint', 'decision', 'decision', 'checkpoint', 'decision', 'decision', 'checkpoint'];
      expect(kinds(lines)).toEqual(finished);
      // The asynchronous signatures arriving later change nothing.
      return new Promise<void>((resolve) => setTimeout(resolve, 50)).then(async () => {
        expect(kinds(lines)).toEqual(finished);
        await t.close();
        expect(kinds(lines)).toEqual(finished);
        expect(verify(lines)).toMatchObject({ warnings: [], chains: [{ checkpoints: 3, unsigned: 0 }] });
        expect(verify(lines).broken).toBeUndefined();
      });
    });

    // A real process with the default (buffered) stdout destination, ending while checkpoints are being signed.
    it.each([
      ['process.exit()', 'process.exit(0);'],
      ['an uncaught error', "throw new Error('boom');"],
    ])('a process ending by %s while checkpoints are signed writes every event, signed, and the chain verifies', (_how, end) => {
      const script = `
        import { createRootLogger } from ${JSON.stringify(join(import.meta.dirname, '../../../common/src/logging.ts'))};
        import { AuditTrail } from ${JSON.stringify(join(import.meta.dirname, 'audit-trail.ts'))};
        const logger = createRootLogger({ process: 'control-plane', level: 'error' });
        const signer = JSON.parse(process.env.SIGNER);
        const t = new AuditTrail({ logger: logger.child({ component: 'audit' }, { level: 'info' }), log: logger, replica: 'cp-0', signer: () => signer, checkpointEvery: 3, checkpointIntervalMs: 3600000 });
        for (let i = 0; i < 10; i++) t.decision(${JSON.stringify(DECISION)});
        ${end}
      `;
      const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, SIGNER: JSON.stringify(signer) }, encoding: 'utf8' });
      const lines = child.stdout.split('\n').filter((l) => l !== '');
      // chain-start counts: checkpoints after decisions 2, 5, 8 (the last one was being signed at the end), then 2 unsigned.
      expect(kinds(lines)).toEqual(['chain-start', 'decision', 'decision', 'checkpoint', 'decision', 'decision', 'decision', 'checkpoint', 'decision', 'decision', 'decision', 'checkpoint', 'decision', 'decision']);
      expect(verify(lines).broken).toBeUndefined();
      expect(verify(lines).chains).toMatchObject([{ checkpoints: 3, unsigned: 2 }]);
    });

    it('a checkpoint that cannot be signed gives its place back: the waiting events follow without a gap', async () => {
      const lines: string[] = [];
      const t = trail(lines, { every: 2, signer: { keyPem: 'not a key', chainPem: '' } });
      for (let i = 0; i < 3; i++) t.decision(DECISION);
      await t.close();
      expect(kinds(lines)).toEqual(['chain-start', 'decision', 'decision', 'decision']);
      expect(verify(lines, true).broken).toBeUndefined();
    });

    it('a state file write cut short by a crash (a partial .tmp beside it) leaves the link of the checkpoint before', async () => {
      const stateFile = join(dir, 'crash-chain.json');
      const first = await recorded({ stateFile });
      const kept = readFileSync(stateFile, 'utf8');
      writeFileSync(`${stateFile}.tmp`, kept.slice(0, 20));
      const second = await recorded({ stateFile });
      expect(events(second)[0]?.previous).toEqual(JSON.parse(kept));
      expect(verify([...first, ...second]).broken).toBeUndefined();
    });
  });
});
