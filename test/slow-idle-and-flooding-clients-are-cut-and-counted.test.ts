// Issue 16 item 1: a sidecar's listeners hold limits. A client sending its headers a byte at a time,
// a peer that opens TLS and says nothing, a CONNECT tunnel left idle, and a flood of connections are
// each cut (in seconds, not Node's minutes) and counted, while legitimate calls go on.
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';

/** Resolves with what the server sent once it closes the connection (bounded: 20 s, else 'still open'). */
function closed(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => undefined);
    const timer = setTimeout(() => resolve('still open'), 20_000);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

const refused = async (mesh: Mesh, agent: string, listener: string, reason: string): Promise<number> => {
  const text = await (await fetch(`http://127.0.0.1:${mesh.agent(agent).adminPort}/metrics`)).text();
  const m = new RegExp(`^airlock_sidecar_connections_refused_total\\{[^}]*listener="${listener}"[^}]*reason="${reason}"[^}]*\\} (\\d+)`, 'm').exec(text);
  return Number(m?.[1] ?? 0);
};

describe('sidecar listener limits', () => {
  let mesh: Mesh;
  let echo: Server;

  beforeAll(async () => {
    echo = createServer((s) => s.pipe(s));
    await listen(echo, { host: '127.0.0.1', port: 0 });
    const policy = `${policyYaml('agents', ['planner', 'researcher'], [{ name: 'p', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] }])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: echo }
spec: { from: { segments: [planner] }, to: { hosts: ["127.0.0.1"], ports: [${boundPort(echo)}] }, action: allow }
`;
    mesh = await startMesh({
      agents: ['planner', 'researcher'],
      policy,
      sidecarArgs: ['--headers-timeout', '1s', '--tls-handshake-timeout', '1s', '--tunnel-idle-timeout', '1s', '--egress-allow-cidrs', '127.0.0.0/8'],
    });
  });
  afterAll(async () => {
    await mesh.close();
    await closeServer(echo);
  });

  it('answers 408 to headers sent a byte at a time, and closes the connection; other calls go on', { timeout: 30_000 }, async () => {
    const socket = connect(mesh.agent('planner').outboundPort, '127.0.0.1');
    const done = closed(socket);
    socket.write('GET http://researcher.agents/v1/slow HTTP/1.1\r\nHost: researcher.agents\r\n');
    const drip = setInterval(() => socket.writable && socket.write('X'), 200);
    expect((await mesh.call('planner', 'GET', 'http://researcher.agents/v1/meanwhile')).status).toBe(200);
    const got = await done;
    clearInterval(drip);
    expect(got).toMatch(/^HTTP\/1\.1 408 /);
    expect(got).toContain('request_timeout');
    expect(await refused(mesh, 'planner', 'outbound', 'request_timeout')).toBeGreaterThanOrEqual(1);
    expect(mesh.agent('researcher').received.some((r) => r.path === '/v1/slow')).toBe(false);
  });

  it('closes a peer connection that never finishes its TLS handshake', { timeout: 30_000 }, async () => {
    const socket = connect(mesh.agent('researcher').inboundPort, '127.0.0.1');
    expect(await closed(socket)).toBe('');
    const text = await (await fetch(`http://127.0.0.1:${mesh.agent('researcher').adminPort}/metrics`)).text();
    expect(text).toMatch(/airlock_sidecar_inbound_rejected_total\{[^}]*reason="handshake_failed"[^}]*\} [1-9]/);
  });

  it('closes a CONNECT tunnel idle both ways, and keeps one that talks', { timeout: 30_000 }, async () => {
    const target = `127.0.0.1:${boundPort(echo)}`;
    const open = (): Promise<Socket> =>
      new Promise((resolve, reject) => {
        const s = connect(mesh.agent('planner').outboundPort, '127.0.0.1', () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
        s.once('data', (d: Buffer) => (d.toString('latin1').startsWith('HTTP/1.1 200') ? resolve(s) : reject(new Error(d.toString('latin1')))));
        s.once('error', reject);
      });
    const idle = await open();
    const talking = await open();
    const idleClosed = closed(idle);
    const talkingClosed = closed(talking);
    // The talking tunnel sends a line every 300 ms (its echo comes back), for 3 s: longer than the idle timeout.
    for (let i = 0; i < 10; i++) {
      talking.write(`line ${i}\n`);
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(await idleClosed).toBe('');
    expect(talking.destroyed).toBe(false);
    talking.destroy();
    await talkingClosed;
    expect(await refused(mesh, 'planner', 'outbound', 'tunnel_idle')).toBeGreaterThanOrEqual(1);
  });
});

describe('sidecar connection cap', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startMesh({
      agents: ['planner', 'researcher'],
      policy: policyYaml('agents', ['planner', 'researcher'], [{ name: 'p', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] }]),
      sidecarArgs: ['--max-connections', '5'],
    });
  });
  afterAll(async () => mesh.close());

  it('closes connections past maxConnections at once and counts them; once they are gone, calls go through', { timeout: 30_000 }, async () => {
    const port = mesh.agent('planner').outboundPort;
    const held: Socket[] = [];
    for (let i = 0; i < 5; i++) {
      const s = connect(port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      held.push(s);
    }
    // The agent's flood: these get no answer, only a close, while the five are held open.
    const extra = Array.from({ length: 3 }, () => connect(port, '127.0.0.1'));
    const outcomes = await Promise.all(extra.map((s) => closed(s)));
    expect(outcomes).toEqual(['', '', '']);
    expect(held.every((s) => !s.destroyed)).toBe(true);
    expect(await refused(mesh, 'planner', 'outbound', 'max_connections')).toBeGreaterThanOrEqual(3);
    for (const s of held) s.destroy();
    await expect.poll(async () => (await mesh.call('planner', 'GET', 'http://researcher.agents/v1/after')).status, { timeout: 10_000 }).toBe(200);
  });
});
