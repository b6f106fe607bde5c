import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { Agent, ProxyAgent } from 'undici7';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { adminGet, adminPost } from '../cli/src/admin-client.ts';
import { auditEventsOf, auditSchemaProblems } from '../control-plane/src/testing/audit-events.ts';
import { caFromPem } from '../sidecar/src/testing/certs.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { refusal, sdkClient } from './support/mcp-sdk-client.ts';
import { recorder, startSdkMcpApp } from './support/mcp-sdk-app.ts';

// planner may call `transfer` and `wire` only once a responder approves each call (wire waits 1s at
// most), `close_account` once an admin does; `balance` needs no approval.
const POLICY = `${policyYaml('agents', ['planner', 'tools'], [])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: planner-tools }
spec:
  from: { segments: [planner] }
  to: { segments: [tools] }
  rules:
    - { methods: [POST], paths: [/mcp], mcp: { methods: [tools/call], tools: [transfer] }, approve: required, approvalTimeout: 60s }
    - { methods: [POST], paths: [/mcp], mcp: { methods: [tools/call], tools: [wire] }, approve: required, approvalTimeout: 1s }
    - { methods: [POST], paths: [/mcp], mcp: { methods: [tools/call], tools: [close_account] }, approve: required, approver: admin, approvalTimeout: 60s }
    - { methods: [POST], paths: [/mcp] }
  action: allow
`;

/** The tools of the MCP app, each recording its call in `called`. */
function approvalTools(called: string[]): (mcp: McpServer) => void {
  const record = recorder(called);
  return (mcp) => {
    mcp.registerTool('transfer', { description: 'moves money', inputSchema: { amount: z.number() } }, (a) => record(`transferred ${a.amount}`));
    mcp.registerTool('wire', { description: 'wires money', inputSchema: { amount: z.number() } }, (a) => record(`wired ${a.amount}`));
    mcp.registerTool('close_account', { description: 'closes the account' }, () => record('closed'));
    mcp.registerTool('balance', { description: 'reads the balance' }, () => record('balance 7'));
  };
}

interface Held {
  id: string;
  source: string;
  destination: string;
  tool: string;
  arguments: string;
  binding: string;
}

/** A call whose settling is observed without waiting on it. */
function track<T>(p: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  const promise = p.finally(() => {
    done = true;
  });
  promise.catch(() => undefined);
  return { promise, settled: () => done };
}


describe('MCP tools/call under approve: required waits for a human, bound to the exact call', () => {
  let mesh: Mesh;
  const called: string[] = [];
  let proxy: ProxyAgent;
  let client: Client;
  let credentials: string;
  const bin = join(import.meta.dirname, '..', 'cli', 'bin', 'airlock.js');

  beforeAll(async () => {
    mesh = await startMesh({ agents: ['planner', 'tools'], policy: POLICY, startApp: (name, onRequest) => startSdkMcpApp(name, onRequest, approvalTools(called)) });
    proxy = new ProxyAgent(`http://127.0.0.1:${mesh.agent('planner').outboundPort}`);
    client = await sdkClient('http://tools.agents/mcp', proxy);
    credentials = join(mesh.dir, 'admin.json');
    writeFileSync(credentials, JSON.stringify(mesh.creds));
  });
  afterAll(async () => {
    await client.close();
    await proxy.close();
    await mesh.close();
  });

  const text = (r: unknown): string => ((r as { content: { text: string }[] }).content[0]?.text ?? '');
  const airlock = async (...args: string[]): Promise<string> =>
    (await promisify(execFile)(process.execPath, [bin, ...args], { env: { ...process.env, AIRLOCK_CREDENTIALS: credentials }, timeout: 20_000 })).stdout;
  const pending = async (): Promise<Held[]> => ((await adminGet(mesh.creds, '/v1/approvals')) as { items: Held[] }).items;
  /** The held call with these arguments, once the control plane holds it (polled: the call is in flight). */
  async function heldWith(args: string, except: readonly string[] = []): Promise<Held> {
    for (let i = 0; i < 200; i++) {
      const hit = (await pending()).find((h) => h.arguments === args && !except.includes(h.id));
      if (hit !== undefined) return hit;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no call with arguments ${args} was held`);
  }

  it('holds the call until `airlock approvals approve` releases it, and the tool result reaches the client; the same call again needs its own approval', async () => {
    const call = track(client.callTool({ name: 'transfer', arguments: { amount: 5 } }));
    const held = await heldWith('{"amount":5}');
    expect(held).toMatchObject({ source: mesh.agent('planner').identity, destination: mesh.agent('tools').identity, tool: 'transfer' });
    // Held: neither answered nor at the server.
    expect(call.settled()).toBe(false);
    expect(called).not.toContain('transferred 5');
    expect(await airlock('approvals', 'list')).toContain(held.id);
    expect(await airlock('explain', '--from', held.source, '--to', 'tools.agents', '--path', '/mcp', '--tool', 'transfer', '--args', '{"amount":5}')).toMatch(/^approval: +required \(responder, within 60s\)$/m);
    expect(await airlock('approvals', 'approve', held.id)).toMatch(new RegExp(`${held.id} approved by admin-token`));
    expect(text(await call.promise)).toBe('transferred 5');
    expect(called.filter((c) => c === 'transferred 5')).toHaveLength(1);

    // No replay: the identical call is held again under a new approval, and the first one is gone.
    const again = track(client.callTool({ name: 'transfer', arguments: { amount: 5 } }));
    const second = await heldWith('{"amount":5}');
    expect(second.id).not.toBe(held.id);
    await expect(adminPost(mesh.creds, '/v1/approvals/approve', { id: held.id })).rejects.toThrow(/no approval .* is pending here/);
    expect(again.settled()).toBe(false);
    await airlock('approvals', 'approve', second.id);
    expect(text(await again.promise)).toBe('transferred 5');
    expect(called.filter((c) => c === 'transferred 5')).toHaveLength(2);

    // Every step is audited, with who approved, and every event conforms to the schema.
    const released = (e: Record<string, unknown>): boolean => e.kind === 'decision' && e.direction === 'inbound' && (e.approval as { state?: string; binding?: string } | undefined)?.binding === held.binding;
    // pino writes asynchronously: read until the last event of the second call is there (bounded).
    let events: Record<string, unknown>[] = [];
    for (let i = 0; i < 50 && events.filter(released).length < 2; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      events = auditEventsOf(readFileSync(join(mesh.dir, 'control-plane.log'), 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>));
    }
    const ofHeld = events.filter((e) => JSON.stringify(e).includes(held.id));
    expect(ofHeld).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'decision', verdict: 'pending', direction: 'outbound', approval: { id: held.id, state: 'pending', binding: held.binding } }),
        expect.objectContaining({ kind: 'admin', action: 'approval.approve', actor: 'admin-token', target: held.id }),
        expect.objectContaining({ kind: 'decision', verdict: 'allow', direction: 'outbound', approval: expect.objectContaining({ id: held.id, state: 'approved', by: 'admin-token' }) as unknown }),
      ]),
    );
    // The destination's sidecar asked too, and was let through once on the release of that exact call.
    expect(events.filter(released).map((e) => [e.verdict, (e.approval as { state: string }).state])).toEqual([['allow', 'released'], ['allow', 'released']]);
    expect(JSON.stringify(ofHeld)).not.toContain('"amount"');
    for (const e of events) expect(auditSchemaProblems(e)).toEqual([]);
  });

  it('`airlock approvals deny` gives the client a tool error naming approval_denied and the reason, and the session stays usable', async () => {
    const call = track(client.callTool({ name: 'transfer', arguments: { amount: 900 } }));
    const held = await heldWith('{"amount":900}');
    expect(await airlock('approvals', 'deny', held.id, '--reason', 'too much')).toMatch(/denied by admin-token/);
    const err = await refusal(call.promise);
    expect(err.code).toBe(-32050);
    expect(err.message).toMatch(/approval_denied: admin-token denied this call \(too much\)/);
    expect(err.data).toMatchObject({ error: 'approval_denied', policy: 'planner-tools' });
    expect(called).not.toContain('transferred 900');
    expect(text(await client.callTool({ name: 'balance', arguments: {} }))).toBe('balance 7');
  });

  it('a call no one approves within approvalTimeout is denied as approval_timeout', async () => {
    const err = await refusal(client.callTool({ name: 'wire', arguments: { amount: 1 } }));
    expect(err.data).toMatchObject({ error: 'approval_timeout' });
    expect(err.message).toMatch(/approval_timeout: no one approved this call within 1s/);
    expect(called).not.toContain('wired 1');
    expect(await pending()).toEqual([]);
    // The timeout is audited (actor control-plane), and so is the held call's end; both conform to the schema.
    const id = (err.data as { decisionId: string }).decisionId;
    let events: Record<string, unknown>[] = [];
    for (let i = 0; i < 50 && !events.some((e) => e.decisionId === id); i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      events = auditEventsOf(readFileSync(join(mesh.dir, 'control-plane.log'), 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>));
    }
    const end = events.find((e) => e.decisionId === id);
    expect(end).toMatchObject({ verdict: 'deny', approval: { state: 'timeout' } });
    const approvalId = (end?.approval as { id: string }).id;
    const timedOut = events.find((e) => e.kind === 'admin' && e.action === 'approval.timeout' && e.target === approvalId);
    expect(timedOut).toMatchObject({ actor: 'control-plane' });
    expect([end, timedOut].flatMap((e) => auditSchemaProblems(e))).toEqual([]);
  });

  it('an approval of one call never releases another with different arguments', async () => {
    const a = track(client.callTool({ name: 'transfer', arguments: { amount: 1 } }));
    const b = track(client.callTool({ name: 'transfer', arguments: { amount: 2 } }));
    const heldA = await heldWith('{"amount":1}');
    const heldB = await heldWith('{"amount":2}');
    expect(heldA.binding).not.toBe(heldB.binding);
    await airlock('approvals', 'approve', heldA.id);
    expect(text(await a.promise)).toBe('transferred 1');
    // B is still held: A's approval did not release it.
    expect((await pending()).map((h) => h.id)).toEqual([heldB.id]);
    expect(b.settled()).toBe(false);
    expect(called).not.toContain('transferred 2');
    await airlock('approvals', 'deny', heldB.id);
    expect((await refusal(b.promise)).data).toMatchObject({ error: 'approval_denied' });
    expect(called).not.toContain('transferred 2');
  });

  it('only a responder or admin sees and decides held calls, and a rule with approver: admin is decided by an admin only', async () => {
    const token = async (role: string): Promise<typeof mesh.creds> => {
      const created = JSON.parse(await airlock('api-token', 'create', '--name', `approvals-${role}`, '--role', role, '-o', 'json')) as { token: string };
      return { ...mesh.creds, token: created.token };
    };
    const [viewer, editor, responder] = [await token('viewer'), await token('editor'), await token('responder')];
    const call = track(client.callTool({ name: 'close_account', arguments: {} }));
    const held = await heldWith('{}');
    await expect(adminGet(viewer, '/v1/approvals')).rejects.toThrow(/needs role responder/);
    await expect(adminPost(editor, '/v1/approvals/approve', { id: held.id })).rejects.toThrow(/needs role responder/);
    expect(((await adminGet(responder, '/v1/approvals')) as { items: Held[] }).items.map((h) => h.id)).toContain(held.id);
    await expect(adminPost(responder, '/v1/approvals/approve', { id: held.id })).rejects.toThrow(/has role responder; this needs role admin/);
    await expect(adminPost(responder, '/v1/approvals/deny', { id: held.id })).rejects.toThrow(/this needs role admin/);
    expect(call.settled()).toBe(false);
    expect(called).not.toContain('closed');
    await airlock('approvals', 'approve', held.id);
    expect(text(await call.promise)).toBe('closed');
    // A responder decides a responder rule's call, and is named as the one who did.
    const transfer = track(client.callTool({ name: 'transfer', arguments: { amount: 3 } }));
    const heldTransfer = await heldWith('{"amount":3}');
    expect(await adminPost(responder, '/v1/approvals/approve', { id: heldTransfer.id })).toMatchObject({ state: 'approved', decidedBy: 'approvals-responder' });
    expect(text(await transfer.promise)).toBe('transferred 3');
  });

  it('a peer holding the source SVID that skips its own sidecar hold is denied at the destination sidecar: no approval was released for that call', async () => {
    const caPem = readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8');
    const planner = caFromPem(caPem, readFileSync(join(mesh.dataDir, 'ca.key'), 'utf8')).issue({ uris: [mesh.agent('planner').identity] });
    const peer = new Agent({ connect: { ca: caPem, cert: planner.certPem, key: planner.keyPem, checkServerIdentity: () => undefined } });
    const direct = await sdkClient(`https://127.0.0.1:${mesh.agent('tools').inboundPort}/mcp`, peer);
    try {
      // The same arguments as calls approved earlier: their releases were taken by those calls.
      for (const amount of [5, 1, 77]) {
        const err = await refusal(direct.callTool({ name: 'transfer', arguments: { amount } }));
        expect(err.message).toMatch(/needs a human approval, and none was given for this exact call at its source/);
      }
      expect(text(await direct.callTool({ name: 'balance', arguments: {} }))).toBe('balance 7');
      expect(called.filter((c) => c === 'transferred 77')).toEqual([]);
    } finally {
      await direct.close();
      await peer.close();
    }
  });
});

describe('the same hold over the unary transport (authzTransport: unary)', () => {
  let mesh: Mesh;
  const called: string[] = [];
  let proxy: ProxyAgent;
  let client: Client;

  beforeAll(async () => {
    mesh = await startMesh({ agents: ['planner', 'tools'], policy: POLICY, sidecarArgs: ['--authz-transport', 'unary'], startApp: (name, onRequest) => startSdkMcpApp(name, onRequest, approvalTools(called)) });
    proxy = new ProxyAgent(`http://127.0.0.1:${mesh.agent('planner').outboundPort}`);
    client = await sdkClient('http://tools.agents/mcp', proxy);
  });
  afterAll(async () => {
    await client.close();
    await proxy.close();
    await mesh.close();
  });

  it('holds the call until approved, then the tool result reaches the client; a denial is a tool error', async () => {
    const held = async (): Promise<Held> => {
      for (let i = 0; i < 200; i++) {
        const [first] = ((await adminGet(mesh.creds, '/v1/approvals')) as { items: Held[] }).items;
        if (first !== undefined) return first;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error('no call was held');
    };
    const call = track(client.callTool({ name: 'transfer', arguments: { amount: 8 } }));
    const approval = await held();
    expect(call.settled()).toBe(false);
    await adminPost(mesh.creds, '/v1/approvals/approve', { id: approval.id });
    expect((await call.promise as { content: { text: string }[] }).content[0]?.text).toBe('transferred 8');
    const denied = track(client.callTool({ name: 'transfer', arguments: { amount: 9 } }));
    await adminPost(mesh.creds, '/v1/approvals/deny', { id: (await held()).id });
    expect((await refusal(denied.promise)).data).toMatchObject({ error: 'approval_denied' });
    expect(called).toEqual(['transferred 8']);
  });
});
