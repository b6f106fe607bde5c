import { describe, expect, it } from 'vitest';
import { flowOf, MAX_FLOW_CHARS, MAX_TEMPLATE_SEGMENTS, pathTemplate } from './flows.ts';
import { Learner } from './learner.ts';

describe('pathTemplate', () => {
  it('collapses numbers, UUIDs and long hex into {id}, keeps words, drops the query', () => {
    expect(pathTemplate('/v1/users/42/orders/7?x=1')).toBe('/v1/users/{id}/orders/{id}');
    expect(pathTemplate('/v1/items/3f2c1a9e-0b4d-4c3e-9f00-1234567890ab')).toBe('/v1/items/{id}');
    expect(pathTemplate('/v1/items/3F2C1A9E-0B4D-4C3E-9F00-1234567890AB')).toBe('/v1/items/{id}');
    expect(pathTemplate('/blobs/0123456789abcdef0123')).toBe('/blobs/{id}');
    // Short hex and words are not ids: /v1/cafe is a route.
    expect(pathTemplate('/v1/cafe/abc123')).toBe('/v1/cafe/abc123');
    expect(pathTemplate('/')).toBe('/');
  });

  it('reads a path as policies do: an escaped digit is a digit, a path policies refuse is one flow', () => {
    expect(pathTemplate('/v1/users/%34%32')).toBe('/v1/users/{id}');
    expect(pathTemplate('/v1/../admin')).toBe('{unreadable}');
    expect(pathTemplate('no-slash')).toBe('{unreadable}');
  });

  it('is bounded whatever the path: segments, segment length, flow length', () => {
    const deep = `/${Array.from({ length: 100 }, (_, i) => `s${i}`).join('/')}`;
    expect(pathTemplate(deep).split('/').length).toBe(MAX_TEMPLATE_SEGMENTS + 2);
    expect(pathTemplate(`/${'a'.repeat(10_000)}`).length).toBeLessThan(80);
    const flow = flowOf({ destination: 'x'.repeat(2000), method: 'GET', path: '/a', mcpMethod: 'tools/call', mcpTool: 't' });
    expect(flow.length).toBe(MAX_FLOW_CHARS);
  });

  it('names the MCP tool of a tools/call and the method of other MCP calls', () => {
    expect(flowOf({ destination: 'spiffe://td/ns/a/sa/tools', method: 'POST', path: '/mcp', mcpMethod: 'tools/call', mcpTool: 'search' })).toBe('spiffe://td/ns/a/sa/tools POST /mcp tool=search');
    expect(flowOf({ destination: 'api.example.com:443', method: 'POST', path: '/mcp', mcpMethod: 'tools/list', mcpTool: '' })).toBe('api.example.com:443 POST /mcp mcp=tools/list');
    expect(flowOf({ destination: 'api.example.com:443', method: 'GET', path: '/v1/a/1', mcpMethod: '', mcpTool: '' })).toBe('api.example.com:443 GET /v1/a/{id}');
  });
});

const A = 'spiffe://td/ns/a/sa/agent';
const LEARN = 10_000;

describe('Learner', () => {
  it('learns flows while learning, then flags a new flow once per flow and keeps flagging its calls as repeats', () => {
    const l = new Learner();
    expect(l.observe(A, 'f1', LEARN, 10, 0)).toEqual({ kind: 'learning' });
    expect(l.observe(A, 'f1', LEARN, 10, 5_000)).toEqual({ kind: 'learning' });
    expect(l.observe(A, 'f1', LEARN, 10, 20_000)).toEqual({ kind: 'normal' });
    expect(l.observe(A, 'f2', LEARN, 10, 20_001)).toEqual({ kind: 'new-flow', repeat: false, remembered: true });
    expect(l.observe(A, 'f2', LEARN, 10, 20_002)).toEqual({ kind: 'new-flow', repeat: true, remembered: true });
    // Learning runs from each identity's own first call.
    expect(l.observe('spiffe://td/ns/a/sa/b', 'f2', LEARN, 10, 20_003)).toEqual({ kind: 'learning' });
  });

  it('raises nothing for the same flows at rates within the factor, and a rate over factor × the peak once per window', () => {
    const l = new Learner();
    // Learning: 3 calls in one 10s window (the window is the learning period, shorter than a minute).
    for (const t of [0, 1_000, 2_000]) l.observe(A, 'f', LEARN, 10, t);
    // After: up to 30 calls in a window is within 10 × 3.
    for (let i = 0; i < 30; i++) expect(l.observe(A, 'f', LEARN, 10, 20_000 + i).kind).toBe('normal');
    expect(l.observe(A, 'f', LEARN, 10, 20_100)).toMatchObject({ kind: 'rate', repeat: false, count: 31, peak: 3 });
    expect(l.observe(A, 'f', LEARN, 10, 20_101)).toMatchObject({ kind: 'rate', repeat: true });
    // The next window starts counting again.
    expect(l.observe(A, 'f', LEARN, 10, 30_000).kind).toBe('normal');
  });

  it('accepts a flagged flow as normal, and resets an identity to learn again', () => {
    const l = new Learner();
    l.observe(A, 'f1', LEARN, 10, 0);
    l.observe(A, 'f2', LEARN, 10, 20_000);
    expect(l.accept(A, 'f3', 'alice', 20_001)).toBe(false);
    expect(l.accept(A, 'f2', 'alice', 20_001)).toBe(true);
    expect(l.observe(A, 'f2', LEARN, 10, 20_002).kind).toBe('normal');
    expect(l.get(A)?.flows.find((f) => f.flow === 'f2')).toMatchObject({ normal: true, acceptedBy: 'alice' });
    expect(l.reset(A)).toBe(true);
    expect(l.observe(A, 'f9', LEARN, 10, 40_000)).toEqual({ kind: 'learning' });
  });

  it('is bounded: flows per identity and identities, each drop counted; past the flow bound a new flow is still an anomaly', () => {
    const dropped: string[] = [];
    const l = new Learner({ maxFlows: 2, maxIdentities: 2 }, (what) => dropped.push(what));
    l.observe(A, 'f1', LEARN, 10, 0);
    l.observe(A, 'f2', LEARN, 10, 1);
    expect(l.observe(A, 'f3', LEARN, 10, 2)).toEqual({ kind: 'learning' });
    expect(l.get(A)?.flows.map((f) => f.flow)).toEqual(['f1', 'f2']);
    expect(l.observe(A, 'f4', LEARN, 10, 20_000)).toEqual({ kind: 'new-flow', repeat: false, remembered: false });
    expect(l.observe(A, 'f4', LEARN, 10, 20_001)).toEqual({ kind: 'new-flow', repeat: false, remembered: false });
    l.observe('spiffe://td/ns/a/sa/b', 'f', LEARN, 10, 0);
    expect(l.observe('spiffe://td/ns/a/sa/c', 'f', LEARN, 10, 0)).toEqual({ kind: 'untracked' });
    expect(l.size).toBe(2);
    expect(dropped).toEqual(['flow', 'flow', 'flow', 'identity']);
    expect(l.get(A)?.droppedFlows).toBe(3);
  });

  it("merges another replica's record: flows united, normal in either is normal, the higher peak, the earlier start; nothing to write back", () => {
    const here = new Learner();
    const there = new Learner();
    here.observe(A, 'f1', LEARN, 10, 1_000);
    there.observe(A, 'f2', LEARN, 10, 0);
    there.observe(A, 'f2', LEARN, 10, 1);
    here.observe(A, 'f3', LEARN, 10, 20_000);
    there.observe(A, 'f3', LEARN, 10, 2);
    here.takeDirty();
    const [theirs] = there.takeDirty();
    if (theirs === undefined) throw new Error('nothing learned there');
    here.merge(theirs);
    expect(here.takeDirty()).toEqual([]);
    const merged = here.get(A);
    expect(merged?.startedAt).toBe(0);
    expect(merged?.flows.map((f) => [f.flow, f.normal, f.peak])).toEqual([['f1', true, 1], ['f3', true, 1], ['f2', true, 2]]);
    // A flow the other replica learned is normal here after learning.
    expect(here.observe(A, 'f2', LEARN, 10, 20_001).kind).toBe('normal');
    // An identity only the other replica knows.
    const fresh = new Learner();
    fresh.merge(theirs);
    expect(fresh.takeDirty()).toEqual([]);
    expect(fresh.observe(A, 'f2', LEARN, 10, 20_000).kind).toBe('normal');
  });

  it('hands out what changed once (a batch), and restores what the store kept', () => {
    const l = new Learner();
    l.observe(A, 'f1', LEARN, 10, 0);
    l.observe(A, 'f1', LEARN, 10, 1);
    const batch = l.takeDirty();
    expect(batch.map((r) => r.spiffeId)).toEqual([A]);
    expect(l.takeDirty()).toEqual([]);
    // A call on a known flow at a known rate changes nothing to write.
    l.observe(A, 'f1', LEARN, 10, 20_000);
    expect(l.takeDirty()).toEqual([]);
    const next = new Learner();
    next.restore(batch);
    expect(next.observe(A, 'f1', LEARN, 10, 20_000).kind).toBe('normal');
    expect(next.observe(A, 'f2', LEARN, 10, 20_001).kind).toBe('new-flow');
  });
});
