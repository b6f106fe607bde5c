import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminPost } from '../cli/src/admin-client.ts';
import { startEchoApp } from '../cli/src/demo/echo-app.ts';
import { startMcpEchoApp } from './support/mcp-echo-app.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { rawHttp } from './support/raw-http.ts';
import { obtainSvid, type HeldSvid } from './support/svid.ts';

// Sidecars parse a POST application/json body for MCP only where a rule reads MCP (the scope the
// control plane pushes); elsewhere the body is not read (mcp_body_skipped). A stale scope never
// lets a call be judged as "no MCP" where a rule now reads it.
const TD = 'lazy.test';
const id = (sa: string): string => `spiffe://${TD}/ns/agents/sa/${sa}`;
const byId = (name: string, sa: string): string => `apiVersion: airlock.dev/v1\nkind: Segment\nmetadata: { name: ${name} }\nspec: { selector: { spiffeIds: ["${id(sa)}"] } }\n`;
const denyTool = (name: string, from: string, to: string, tool: string): string =>
  `apiVersion: airlock.dev/v1\nkind: Policy\nmetadata: { name: ${name} }\nspec:\n  from: { segments: [${from}] }\n  to: { segments: [${to}] }\n  rules: [ { paths: [/mcp/*], mcp: { tools: [${tool}] } } ]\n  action: deny\n`;

const POLICY = [
  policyYaml('agents', ['planner', 'tools', 'files', 'direct'], [
    { name: 'planner-to-tools', from: 'planner', to: 'tools', methods: ['POST'], paths: ['/mcp/*'] },
    { name: 'planner-to-files', from: 'planner', to: 'files', methods: ['POST'], paths: ['/mcp/*'] },
    { name: 'direct-to-tools', from: 'direct', to: 'tools', methods: ['POST'], paths: ['/mcp/*'] },
  ]),
  byId('files-id', 'files'),
  denyTool('no-delete-on-files', 'planner', 'files-id', 'delete_all'),
].join('---\n');
// Applied under traffic: a rule on MCP for tools, which had none.
const NO_DELETE_ON_TOOLS = [byId('tools-id', 'tools'), denyTool('no-delete-on-tools', 'planner', 'tools-id', 'delete_all'), denyTool('no-delete-direct', 'direct', 'tools-id', 'delete_all')].join('---\n');

const JSON_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const rpc = (method: string, params?: Record<string, unknown>): string => JSON.stringify({ jsonrpc: '2.0', id: 1, method, ...(params === undefined ? {} : { params }) });
const DENIED = -32050;

/** A sidecar's metric sample (summed over the label sets whose text contains `labels`), 0 when absent. */
async function metric(mesh: Mesh, agent: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${mesh.agent(agent).adminPort}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(labels))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

/** Bounded: until each sidecar holds the scope of policy version `version` (or later) and its ticket key. */
async function scopesAt(mesh: Mesh, agents: readonly string[], version: number): Promise<void> {
  for (const a of agents) {
    for (let i = 0; i < 500 && ((await metric(mesh, a, 'airlock_sidecar_mcp_body_scope_version')) < version || (await metric(mesh, a, 'airlock_sidecar_ticket_key_id')) < 1); i++) await new Promise((r) => setTimeout(r, 20));
  }
}

/** Three calls in four are of the tool the change denies. */
const toolOf = (seq: number): string => (seq % 4 === 3 ? 'search_web' : 'delete_all');

interface AuditedCall { readonly seq: number; readonly direction: string; readonly verdict: string; readonly policyVersion: number }

/** The control plane's decisions about the load's calls (path /mcp/seq/N), once at least `atLeast` are written (pino writes asynchronously). */
async function auditedCalls(mesh: Mesh, atLeast: number): Promise<AuditedCall[]> {
  let found: AuditedCall[] = [];
  for (let i = 0; i < 100 && found.length < atLeast; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100));
    found = readFileSync(join(mesh.dir, 'control-plane.log'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('"/mcp/seq/'))
      .map((l) => (JSON.parse(l) as { audit?: { kind: string; path: string; direction: string; verdict: string; policyVersion: number } }).audit)
      .filter((a) => a?.kind === 'decision')
      .map((a) => ({ seq: Number(a?.path.split('/').pop()), direction: a?.direction ?? '', verdict: a?.verdict ?? '', policyVersion: a?.policyVersion ?? -1 }));
  }
  return found;
}

describe('MCP bodies are read only where a rule needs them', () => {
  let mesh: Mesh;
  let direct: HeldSvid;
  const received = new Map<string, { path: string; body: string }[]>();

  beforeAll(async () => {
    mesh = await startMesh({
      agents: ['planner', 'tools', 'files'],
      trustDomain: TD,
      policy: POLICY,
      startApp: (agent, onRequest) => {
        const seen: { path: string; body: string }[] = [];
        received.set(agent, seen);
        return agent === 'planner' ? startEchoApp(agent, 0, onRequest) : startMcpEchoApp(agent, (b) => { seen.push({ path: b.path, body: b.body }); onRequest(b); });
      },
    });
    direct = await obtainSvid(mesh, id('direct'));
    await scopesAt(mesh, ['planner', 'tools', 'files'], 1);
  }, 60_000);
  afterAll(async () => mesh.close());

  const call = (to: string, body: string, path = '/mcp') => mesh.call('planner', 'POST', `http://${to}.agents${path}`, { headers: JSON_HEADERS, body });

  it('without a rule on MCP, a POST application/json body is not read at either end: not JSON, or over the limit, it passes on its ticket; a tool rule elsewhere still denies', async () => {
    const counts = async () => ({
      egressSkipped: await metric(mesh, 'planner', 'airlock_sidecar_mcp_bodies_total', 'body="skipped"'),
      ingressSkipped: await metric(mesh, 'tools', 'airlock_sidecar_mcp_bodies_total', 'body="skipped"'),
      ingressRead: await metric(mesh, 'tools', 'airlock_sidecar_mcp_bodies_total', 'body="read"'),
      ticketed: await metric(mesh, 'tools', 'airlock_sidecar_ticket_admissions_total'),
    });
    const before = await counts();
    // Read, either body would be "not a readable MCP request": no ticket would be issued for it, and the ingress would ask.
    const notJson = '{"jsonrpc":"2.0","id":1,"method":"tools/call",';
    const huge = rpc('tools/call', { name: 'delete_all', arguments: { pad: 'x'.repeat(100 * 1024) } });
    expect((await call('tools', notJson)).status).toBe(400); // the app's own parse error: it got the body
    expect((await call('tools', huge)).status).toBe(200);
    expect(received.get('tools')?.slice(-2).map((r) => r.body)).toEqual([notJson, huge]);
    const after = await counts();
    expect(after.egressSkipped - before.egressSkipped).toBe(2);
    expect(after.ingressSkipped - before.ingressSkipped).toBe(2);
    expect(after.ingressRead - before.ingressRead).toBe(0);
    // Judged as calls without MCP: each got a ticket, and the ingress admitted it without a round trip.
    expect(after.ticketed - before.ticketed).toBe(2);

    // files has a rule on MCP: its bodies are read at both ends, and the rule denies.
    const filesBefore = received.get('files')?.length ?? 0;
    const denied = await call('files', rpc('tools/call', { name: 'delete_all' }));
    expect(denied.json<{ error: { code: number; data: { policy: string } } }>().error).toMatchObject({ code: DENIED, data: { policy: 'no-delete-on-files' } });
    expect(received.get('files')?.length).toBe(filesBefore);
    expect((await call('files', rpc('tools/call', { name: 'search_web' }))).status).toBe(200);
    expect(received.get('files')?.length).toBe(filesBefore + 1);
    expect(await metric(mesh, 'files', 'airlock_sidecar_mcp_bodies_total', 'body="skipped"')).toBe(0);
  });

  it('a request with Mcp-Method or Mcp-Name headers has its body read even where no rule reads MCP: headers that contradict it are denied', async () => {
    const toolsBefore = received.get('tools')?.length ?? 0;
    const lying = await mesh.call('planner', 'POST', 'http://tools.agents/mcp', { headers: { ...JSON_HEADERS, 'mcp-method': 'tools/call', 'mcp-name': 'search_web' }, body: rpc('tools/call', { name: 'delete_all' }) });
    expect(lying.json<{ error: { code: number; message: string } }>().error.message).toMatch(/Mcp-Name header "search_web" does not match the body's "delete_all"/);
    expect(received.get('tools')?.length).toBe(toolsBefore);
    const honest = await mesh.call('planner', 'POST', 'http://tools.agents/mcp', { headers: { ...JSON_HEADERS, 'mcp-method': 'tools/call', 'mcp-name': 'delete_all' }, body: rpc('tools/call', { name: 'delete_all' }) });
    expect(honest.status).toBe(200);
    expect(received.get('tools')?.length).toBe(toolsBefore + 1);
  });

  it('an MCP rule for the destination is never skipped: a deny-tool rule applied under traffic refuses every call of the tool decided after it, at the egress and at the ingress (tickets and direct callers)', { timeout: 120_000 }, async () => {
    // Calls in flight when the change lands are those a stale scope may have skipped: enough of them, mostly of the denied tool.
    const WORKERS = 10;
    const MAX_CALLS = 900;
    const AFTER_CHANGE = 80;
    interface Call { readonly seq: number; readonly via: 'egress' | 'direct'; readonly tool: string; readonly startedAt: number; endedAt: number; refused: boolean; policy: string }
    const calls: Call[] = [];
    let seq = 0;
    let stopped = false;
    const tls = { ca: direct.ca, cert: direct.certChainPem, key: direct.keyPem, checkServerIdentity: () => undefined };
    const one = async (via: 'egress' | 'direct'): Promise<void> => {
      const n = seq++;
      const tool = toolOf(n);
      const body = rpc('tools/call', { name: tool, arguments: { seq: n } });
      const c: Call = { seq: n, via, tool, startedAt: performance.now(), endedAt: 0, refused: false, policy: '' };
      calls.push(c);
      if (via === 'egress') {
        const res = await call('tools', body, `/mcp/seq/${n}`);
        // A refusal other than a policy's (an unavailable control plane) has no data: not "refused".
        const error = res.json<{ error?: { code?: number; data?: { policy?: string } } }>().error;
        c.refused = error?.code === DENIED;
        c.policy = error?.data?.policy ?? '';
      } else {
        // A caller with its own SVID and no ticket: the ingress asks, with the body it read or skipped.
        const res = await rawHttp(mesh.agent('tools').inboundPort, `POST /mcp/seq/${n} HTTP/1.1\r\nHost: tools.agents\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`, { tls });
        let error: { code?: number; data?: { policy?: string } } | undefined;
        try {
          error = (JSON.parse(res.body) as { error?: typeof error }).error;
        } catch {
          error = undefined; // the app's answer (allowed): not a refusal
        }
        c.refused = error?.code === DENIED;
        c.policy = error?.data?.policy ?? '';
      }
      c.endedAt = performance.now();
    };
    const worker = async (via: 'egress' | 'direct'): Promise<void> => {
      while (!stopped && seq < MAX_CALLS) await one(via);
    };
    const until = async (pred: () => boolean, what: string): Promise<void> => {
      for (let i = 0; i < 6000 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
      if (!pred()) throw new Error(`load never reached: ${what}`);
    };
    const rereadBefore = (await metric(mesh, 'planner', 'airlock_sidecar_mcp_bodies_total', 'body="reread"')) + (await metric(mesh, 'tools', 'airlock_sidecar_mcp_bodies_total', 'body="reread"'));
    const workers = [...Array.from({ length: WORKERS }, () => worker('egress')), worker('direct'), worker('direct'), worker('direct')];
    try {
      await until(() => calls.filter((c) => c.endedAt > 0).length >= 60, '60 calls before the change');
      const sentAt = performance.now();
      const applied = (await adminPost(mesh.creds, '/v1/policy/apply', { yaml: NO_DELETE_ON_TOOLS })) as { changed: boolean; version: number };
      const appliedAt = performance.now();
      expect(applied.changed).toBe(true);
      await until(() => calls.filter((c) => c.startedAt > appliedAt && c.endedAt > 0).length >= AFTER_CHANGE, `${AFTER_CHANGE} calls after the change`);
      stopped = true;
      await Promise.all(workers);

      const seqOf = (body: string): number => (JSON.parse(body) as { params: { arguments: { seq: number } } }).params.arguments.seq;
      const reached = new Set((received.get('tools') ?? []).filter((r) => r.body.includes('"seq"')).map((r) => seqOf(r.body)));
      const before = calls.filter((c) => c.endedAt < sentAt);
      const after = calls.filter((c) => c.startedAt > appliedAt);
      // Before: no rule on MCP, every tool allowed (bodies skipped), from both callers.
      expect(before.filter((c) => c.refused || !reached.has(c.seq))).toEqual([]);
      expect(new Set(before.map((c) => c.via))).toEqual(new Set(['egress', 'direct']));
      // After: every delete_all refused by the new rule, and none reached the app; search_web still goes through.
      const deletes = after.filter((c) => c.tool === 'delete_all');
      expect(new Set(deletes.map((c) => c.via))).toEqual(new Set(['egress', 'direct']));
      expect(deletes.filter((c) => !c.refused || !c.policy.startsWith('no-delete-'))).toEqual([]);
      expect(deletes.filter((c) => reached.has(c.seq)).map((c) => c.seq)).toEqual([]);
      expect(after.filter((c) => c.tool === 'search_web' && (c.refused || !reached.has(c.seq)))).toEqual([]);
      // The decisions themselves (the audit trail, by the call's path): from the first one under the
      // new version on, no delete_all is allowed, at the egress or the ingress, though the calls in
      // flight at the change may have skipped the body on the scope their sidecar held then.
      const decisions = await auditedCalls(mesh, calls.length);
      const underNew = decisions.filter((d) => d.policyVersion >= applied.version);
      expect(underNew.length).toBeGreaterThan(0);
      expect(underNew.filter((d) => d.verdict === 'allow' && toolOf(d.seq) === 'delete_all')).toEqual([]);
      expect(new Set(underNew.map((d) => d.direction))).toEqual(new Set(['outbound', 'inbound']));
      // And a delete_all that reached the app was allowed only by decisions under the old version.
      const allowedUnderNew = new Set(underNew.filter((d) => d.verdict === 'allow').map((d) => d.seq));
      expect([...reached].filter((n) => toolOf(n) === 'delete_all' && allowedUnderNew.has(n))).toEqual([]);
      // Whatever the order of the push and the decisions, the bodies are read now at both ends.
      await scopesAt(mesh, ['planner', 'tools'], applied.version);
      const readBefore = await metric(mesh, 'tools', 'airlock_sidecar_mcp_bodies_total', 'body="read"');
      expect((await call('tools', rpc('tools/call', { name: 'delete_all' }))).json<{ error: { code: number } }>().error.code).toBe(DENIED);
      expect((await call('tools', rpc('tools/call', { name: 'search_web' }))).status).toBe(200);
      expect((await metric(mesh, 'tools', 'airlock_sidecar_mcp_bodies_total', 'body="read"')) - readBefore).toBe(1);
      const reread = (await metric(mesh, 'planner', 'airlock_sidecar_mcp_bodies_total', 'body="reread"')) + (await metric(mesh, 'tools', 'airlock_sidecar_mcp_bodies_total', 'body="reread"'));
      console.log(`calls before ${before.length}, after ${after.length}; skipped bodies read after all on the control plane's request: ${reread - rereadBefore}`);
    } finally {
      stopped = true;
      await Promise.all(workers);
    }
  });
});
