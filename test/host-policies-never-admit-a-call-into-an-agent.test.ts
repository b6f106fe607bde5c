import { credentials, Metadata } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthorizationServiceClient, AuthorizeRequest, Direction, Verdict, type AuthorizeResponse } from '@airlock/proto/authorization/v1';
import { CONTROL_PLANE_CHANNEL_OPTIONS } from '../sidecar/src/controlplane/credentials.ts';
import { startMesh, type Mesh } from './support/mesh.ts';
import { rawHttp } from './support/raw-http.ts';
import { STANDARD_POLICY, AGENTS } from './support/standard-mesh.ts';
import { obtainSvid, type HeldSvid } from './support/svid.ts';

// egress may reach external hosts (some of them of mesh-host shape) and GET researcher's /v1/open;
// planner may reach any `*.agents` host. Neither host policy may admit a call into an agent.
const POLICY = `${STANDARD_POLICY}---
apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: egress }
spec:
  selector: { namespace: agents, serviceAccounts: [egress] }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: egress-out }
spec:
  from: { segments: [egress] }
  to: { hosts: [api.openai.com, "*.openai.com", "*.agents"] }
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: egress-to-researcher }
spec:
  from: { segments: [egress] }
  to: { segments: [researcher] }
  rules: [ { methods: [GET], paths: [/v1/open] } ]
  action: allow
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: planner-out }
spec:
  from: { segments: [planner] }
  to: { hosts: ["*.agents"] }
  action: allow
`;

/**
 * A workload holding a genuine SVID whose segment may reach external hosts talks mTLS straight to
 * another agent's inbound listener, naming such a host in `Host`: an INBOUND decision is about the
 * receiving agent, so only policies to its segments count.
 */
describe('host policies never admit a call into an agent', () => {
  let mesh: Mesh;
  let egress: HeldSvid;
  const appSaw = (agent: string): string[] => mesh.agent(agent).received.map((r) => `${r.method} ${r.path}`);
  const inbound = (path: string, host: string): Promise<{ status: number; body: string }> =>
    rawHttp(mesh.agent('researcher').inboundPort, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`, { tls: { ca: egress.ca, cert: egress.certChainPem, key: egress.keyPem, checkServerIdentity: () => undefined } });

  beforeAll(async () => {
    mesh = await startMesh({ agents: AGENTS, policy: POLICY });
    egress = await obtainSvid(mesh, `spiffe://${mesh.trustDomain}/ns/agents/sa/egress`);
  });
  afterAll(async () => mesh.close());

  it('the SVID gets in where a policy to the agent\'s segment allows (the control case)', async () => {
    const res = await inbound('/v1/open', 'researcher.agents');
    expect(res.status).toBe(200);
    const seen = mesh.agent('researcher').received.at(-1);
    expect(seen?.path).toBe('/v1/open');
    expect(seen?.headers['x-forwarded-client-cert']).toBe(`By=${mesh.agent('researcher').identity};URI=${egress.identity}`);
  });

  it.each([
    ['api.openai.com', 80],
    ['api.openai.com:443', 443],
    ['API.OPENAI.COM', 80],
    ['api.openai.com.', 80],
    ['Api.OpenAI.com.:443', 443],
    ['chat.openai.com', 80], // `*.openai.com`
    ['researcher.agents', 80], // `*.agents` names the agent's own mesh host
    ['payments.agents', 80],
  ])('Host: %s on researcher\'s inbound port is refused (403), and nothing reaches the app', async (host, port) => {
    const before = appSaw('researcher');
    const res = await inbound('/v1/search', host);
    expect(res.status).toBe(403);
    const body = JSON.parse(res.body) as { error: string; reason: string; policy: string };
    expect(body).toMatchObject({ error: 'denied', policy: '' });
    // Judged with researcher as destination, named by its own mesh host whatever Host said.
    expect(body.reason).toBe(`no policy allows GET /v1/search from ${egress.identity} to researcher.agents:${port}`);
    expect(appSaw('researcher')).toEqual(before);
  });

  it('an OUTBOUND call to an agent is not admitted by a host policy naming its mesh host (through planner\'s sidecar)', async () => {
    const before = appSaw('payments');
    const res = await mesh.call('planner', 'GET', 'http://payments.agents/v1/accounts');
    expect(res.status).toBe(403);
    expect(res.json<{ reason: string }>().reason).toBe(`no policy allows GET /v1/accounts from ${mesh.agent('planner').identity} to payments.agents:80`);
    expect(appSaw('payments')).toEqual(before);
  });

  it('the gRPC twin: Authorize OUTBOUND with the SVID is denied for an agent, allowed for an external host', async () => {
    const client = new AuthorizationServiceClient(
      `127.0.0.1:${mesh.grpcPort}`,
      credentials.createSsl(Buffer.from(egress.ca), Buffer.from(egress.keyPem), Buffer.from(egress.certChainPem), { checkServerIdentity: () => undefined }),
      CONTROL_PLANE_CHANNEL_OPTIONS,
    );
    const authorize = (destinationHost: string): Promise<AuthorizeResponse> => {
      const req = AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: egress.identity, destinationHost, destinationPort: 80, method: 'GET', path: '/v1/search' });
      return new Promise((resolve, reject) => client.authorize(req, new Metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err === null ? resolve(res) : reject(err))));
    };
    try {
      for (const host of ['researcher.agents', 'RESEARCHER.agents.']) {
        const res = await authorize(host);
        expect(res, host).toMatchObject({ verdict: Verdict.VERDICT_DENY, policy: '' });
        expect(res.upstream).toBeUndefined();
      }
      // An unregistered name under `*.agents` is an external host: the host policy applies.
      expect(await authorize('nobody.agents')).toMatchObject({ verdict: Verdict.VERDICT_ALLOW, policy: 'egress-out' });
      expect(await authorize('api.openai.com')).toMatchObject({ verdict: Verdict.VERDICT_ALLOW, policy: 'egress-out' });
    } finally {
      client.close();
    }
  });
});
