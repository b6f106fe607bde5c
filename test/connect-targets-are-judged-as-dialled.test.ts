import { connect, createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { rawHttp } from './support/raw-http.ts';

/**
 * CONNECT targets spelt as IP literals are judged as the address `net.connect` dials, through the
 * real outbound proxy. The metadata address is denied by an explicit policy, so nothing is ever
 * dialled there (what is dialled is proven on loopback, with an allowed address spelt as a number).
 */
describe('CONNECT targets are judged as what is dialled', () => {
  let mesh: Mesh;
  let echo: Server;
  let echoPort: number;

  beforeAll(async () => {
    echo = createServer((socket) => socket.pipe(socket));
    await listen(echo, { host: '127.0.0.1', port: 0 });
    echoPort = boundPort(echo);
    const policy = `${policyYaml('agents', ['planner'], [])}---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: no-metadata }
spec:
  from: { segments: [planner] }
  to: { hosts: ["169.254.169.254"] }
  action: deny
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: loopback-echo }
spec:
  from: { segments: [planner] }
  to: { hosts: ["127.0.0.1"], ports: [${echoPort}] }
  action: allow
`;
    // The echo server stands for an external host on loopback, which the sidecar refuses unless the operator allows it.
    mesh = await startMesh({ agents: ['planner'], policy, sidecarArgs: ['--egress-allow-cidrs', '127.0.0.0/8'] });
  });
  afterAll(async () => {
    await mesh.close();
    await closeServer(echo);
  });

  const connectTo = (target: string): Promise<{ status: number; body: string }> =>
    rawHttp(mesh.agent('planner').outboundPort, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);

  it.each([
    '2852039166',
    '0xA9FEA9FE',
    '0XA9FEA9FE',
    '0251.0376.0251.0376',
    '169.254.43518',
    '169.254.169.254.',
    '[::ffff:169.254.169.254]',
    '[::ffff:a9fe:a9fe]',
    '[::FFFF:A9FE:A9FE]',
  ])('CONNECT %s:443 is judged as 169.254.169.254:443 and denied by the policy naming that address', async (host) => {
    const res = await connectTo(`${host}:443`);
    expect(res.status).toBe(403);
    const body = JSON.parse(res.body) as { error: string; policy: string; reason: string };
    expect(body).toMatchObject({ error: 'denied', policy: 'no-metadata' });
    expect(body.reason).toMatch(/^policy "no-metadata" denies CONNECT from \S+ to 169\.254\.169\.254:443$/);
  });

  it.each(['2852039166', '0xA9FEA9FE', '0251.0376.0251.0376', '169.254.169.254.', '[::ffff:a9fe:a9fe]'])(
    'CONNECT %s:80 is served as HTTP (Node fetch sends http:// so), and its request is judged as 169.254.169.254:80 and denied',
    async (host) => {
      // The Host as the client spells it: it names the CONNECT authority in another spelling, and is accepted.
      const raw = await rawHttp(mesh.agent('planner').outboundPort, `CONNECT ${host}:80 HTTP/1.1\r\nHost: ${host}:80\r\n\r\nGET /latest/meta-data/ HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      const [established, answer] = `${raw.head}\r\n\r\n${raw.body}`.split(/(?=HTTP\/1\.1 \d{3} )/);
      expect(established).toMatch(/^HTTP\/1\.1 200 /);
      expect(answer).toMatch(/^HTTP\/1\.1 403 /);
      const body = JSON.parse(answer?.slice(answer.indexOf('\r\n\r\n') + 4) ?? '') as { policy: string; reason: string };
      expect(body.policy).toBe('no-metadata');
      expect(body.reason).toMatch(/^policy "no-metadata" denies GET \/latest\/meta-data\/ from \S+ to 169\.254\.169\.254(:80)?$/);
    },
  );

  it.each(['http://2852039166/latest/meta-data/', 'http://0xA9FEA9FE/latest/meta-data/', 'http://[::ffff:a9fe:a9fe]/latest/meta-data/'])(
    'GET %s (absolute-form) is judged as 169.254.169.254 too',
    async (url) => {
      const host = url.slice('http://'.length, url.indexOf('/', 'http://'.length));
      const res = await rawHttp(mesh.agent('planner').outboundPort, `GET ${url} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      expect(res.status).toBe(403);
      expect((JSON.parse(res.body) as { policy: string }).policy).toBe('no-metadata');
    },
  );

  it('CONNECT to an allowed address spelt as a number is judged and dialled as that address', async () => {
    // 2130706433 is 127.0.0.1: allowed by loopback-echo, and the tunnel reaches the echo server.
    const socket = connect(mesh.agent('planner').outboundPort, '127.0.0.1');
    socket.write(`CONNECT 2130706433:${echoPort} HTTP/1.1\r\nHost: 2130706433:${echoPort}\r\n\r\n`);
    let received = '';
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    await expect.poll(() => received, { timeout: 10_000 }).toMatch(/\r\n\r\n/);
    expect(received).toMatch(/^HTTP\/1\.1 200 Connection Established\r\n/);
    received = '';
    socket.write('ping');
    await expect.poll(() => received, { timeout: 10_000 }).toBe('ping');
    socket.destroy();
  });

  it('refuses a CONNECT target a URL parser would read as another host (400, nothing dialled)', async () => {
    for (const target of ['user@169.254.169.254:80', 'api.example.com@169.254.169.254:80', '169.254.169.254/x:80', '999999999999:80']) {
      const res = await connectTo(target);
      expect(res.status, target).toBe(400);
      expect((JSON.parse(res.body) as { error: string }).error).toBe('bad_request');
    }
  });
});
