import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, Metadata } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTicket, sealTicket, ticketMacValid, TICKET_HEADER } from '@airlock/common/ticket';
import { AuthorizationServiceClient, AuthorizeRequest, Direction, type AuthorizeResponse } from '@airlock/proto/authorization/v1';
import { IdentityServiceClient, type WatchTrustBundleResponse } from '@airlock/proto/identity/v1';
import { adminPost } from '../cli/src/admin-client.ts';
import { spawnAirlock, waitReady } from '../cli/src/demo/processes.ts';
import type { EchoBody } from '../cli/src/demo/echo-app.ts';
import { CONTROL_PLANE_CHANNEL_OPTIONS } from '../sidecar/src/controlplane/credentials.ts';
import { caFromPem, type KeyAndCert } from '../sidecar/src/testing/certs.ts';
import { policyYaml, startMesh, type Mesh } from './support/mesh.ts';
import { rawHttp, type RawResponse } from './support/raw-http.ts';

// A peer holding a genuine SVID (the CA's files stand in for a compromised sidecar's key) tries to
// get calls into researcher's app on tickets that are not exactly theirs. Each must fall back to a
// fresh INBOUND decision, which the policy below denies: nothing reaches the app undecided.
const AGENTS = ['planner', 'researcher', 'payments'] as const;
const POLICY = policyYaml('agents', AGENTS, [
  { name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v1/*'] },
  { name: 'planner-to-payments', from: 'planner', to: 'payments', methods: ['POST'], paths: ['/v1/charge'] },
]);
const NARROWED = policyYaml('agents', [], [{ name: 'planner-to-researcher', from: 'planner', to: 'researcher', methods: ['GET'], paths: ['/v2/*'] }]);

describe('tickets', () => {
  let mesh: Mesh;
  let caPem: string;
  let certs: Record<'planner' | 'payments' | 'researcher', KeyAndCert>;
  let asPlanner: AuthorizationServiceClient;

  beforeAll(async () => {
    mesh = await startMesh({ agents: AGENTS, policy: POLICY });
    caPem = readFileSync(join(mesh.dataDir, 'ca.pem'), 'utf8');
    const ca = caFromPem(caPem, readFileSync(join(mesh.dataDir, 'ca.key'), 'utf8'));
    certs = {
      planner: ca.issue({ uris: [mesh.agent('planner').identity] }),
      payments: ca.issue({ uris: [mesh.agent('payments').identity] }),
      researcher: ca.issue({ uris: [mesh.agent('researcher').identity] }),
    };
    asPlanner = new AuthorizationServiceClient(
      `127.0.0.1:${mesh.grpcPort}`,
      credentials.createSsl(Buffer.from(caPem), Buffer.from(certs.planner.keyPem), Buffer.from(certs.planner.certPem), { checkServerIdentity: () => undefined }),
      CONTROL_PLANE_CHANNEL_OPTIONS,
    );
    // researcher's sidecar is pushed its ticket keys once it holds an SVID: admissions start then.
    for (let i = 0; i < 500 && (await ingress('airlock_sidecar_ticket_key_id')) < 1; i++) await new Promise((r) => setTimeout(r, 20));
  }, 60_000);
  afterAll(async () => {
    asPlanner.close();
    await mesh.close();
  });

  /** A genuine ticket: planner's egress question, answered by the control plane. */
  function ticketFor(host: string, method: string, path: string): Promise<string> {
    const request = AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: mesh.agent('planner').identity, destinationHost: host, destinationPort: 80, method, path });
    return new Promise<AuthorizeResponse>((resolve, reject) => asPlanner.authorize(request, new Metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err === null ? resolve(res) : reject(err)))).then((res) => {
      expect(res.ticket).not.toBe('');
      return res.ticket;
    });
  }

  /** Raw bytes into researcher's inbound mTLS listener, as `who`, with these ticket headers. */
  function intoResearcher(who: 'planner' | 'payments', method: string, path: string, tickets: readonly string[]): Promise<RawResponse> {
    const lines = tickets.map((t) => `${TICKET_HEADER}: ${t}\r\n`).join('');
    return rawHttp(mesh.agent('researcher').inboundPort, `${method} ${path} HTTP/1.1\r\nHost: researcher.agents\r\n${lines}Content-Length: 0\r\nConnection: close\r\n\r\n`, {
      tls: { ca: caPem, cert: certs[who].certPem, key: certs[who].keyPem, checkServerIdentity: () => undefined },
    });
  }

  /** A sample's value (0 when absent): the line of `name` whose labels include every one of `labels`. */
  async function metric(port: number, name: string, labels = ''): Promise<number> {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const wanted = labels === '' ? [] : labels.split(',');
    // The sum over every series with these labels (others, such as reason_class, may split them).
    const lines = text.split('\n').filter((l) => l.startsWith(`${name}{`) && wanted.every((w) => l.slice(name.length, l.indexOf('}')).includes(w)));
    return lines.reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
  }
  const ingress = (name: string, labels = ''): Promise<number> => metric(mesh.agent('researcher').adminPort, name, labels);
  const inboundDecisions = async (): Promise<number> =>
    (await metric(mesh.httpPort, 'airlock_authz_decisions_total', 'direction="inbound",verdict="allow"')) + (await metric(mesh.httpPort, 'airlock_authz_decisions_total', 'direction="inbound",verdict="deny"'));
  const reached = (path: string): boolean => mesh.agent('researcher').received.some((b) => b.path === path);

  /** The first message of WatchTrustBundle opened as `who`: what that sidecar is pushed. */
  async function pushedTo(who: 'payments' | 'researcher'): Promise<WatchTrustBundleResponse> {
    const client = new IdentityServiceClient(
      `127.0.0.1:${mesh.grpcPort}`,
      credentials.createSsl(Buffer.from(caPem), Buffer.from(certs[who].keyPem), Buffer.from(certs[who].certPem), { checkServerIdentity: () => undefined }),
      CONTROL_PLANE_CHANNEL_OPTIONS,
    );
    try {
      return await new Promise((resolve, reject) => {
        const call = client.watchTrustBundle({});
        call.once('data', (msg: WatchTrustBundleResponse) => {
          resolve(msg);
          call.cancel();
        });
        call.on('error', (err: Error) => reject(err));
      });
    } finally {
      client.close();
    }
  }

  it("a sidecar is pushed its own identity's ticket keys only, never another's", async () => {
    const toResearcher = openTicket(await ticketFor('researcher.agents', 'GET', '/v1/keys'));
    const toPayments = openTicket(await ticketFor('payments.agents', 'POST', '/v1/charge'));
    if (toResearcher === undefined || toPayments === undefined) throw new Error('no ticket');
    const verifies = (msg: WatchTrustBundleResponse, t: NonNullable<typeof toResearcher>): boolean => msg.ticketKeys.some((k) => k.keyId === t.keyId && ticketMacValid(t, Buffer.from(k.key)));
    const [researcher, payments] = [await pushedTo('researcher'), await pushedTo('payments')];
    expect(researcher.ticketKeys.length).toBeGreaterThan(0);
    expect(verifies(researcher, toResearcher)).toBe(true);
    expect(verifies(researcher, toPayments)).toBe(false);
    expect(verifies(payments, toPayments)).toBe(true);
    expect(verifies(payments, toResearcher)).toBe(false);
  });

  it('an agent-to-agent call is admitted on its ticket: no second decision, and the app never sees the header', async () => {
    const [admitted, decided] = [await ingress('airlock_sidecar_ticket_admissions_total'), await inboundDecisions()];
    const res = await mesh.call('planner', 'GET', 'http://researcher.agents/v1/first');
    expect(res.status).toBe(200);
    expect(Object.keys(res.json<EchoBody>().headers)).not.toContain(TICKET_HEADER);
    expect(await ingress('airlock_sidecar_ticket_admissions_total')).toBe(admitted + 1);
    expect(await inboundDecisions()).toBe(decided);
  });

  it('an agent that sets airlock-ticket itself: removed by its sidecar, never seen by the app', async () => {
    const stolen = await ticketFor('researcher.agents', 'GET', '/v1/stolen');
    const res = await mesh.call('planner', 'GET', 'http://researcher.agents/v1/stolen', { headers: { [TICKET_HEADER]: stolen, 'Airlock-Ticket': 'x' } });
    expect(res.status).toBe(200);
    expect(Object.keys(res.json<EchoBody>().headers)).not.toContain(TICKET_HEADER);
    // An external host would never get it either: the header is removed before any forwarding.
  });

  it('a genuine ticket sent straight to the ingress admits its call once; the app never sees the header', async () => {
    const ticket = await ticketFor('researcher.agents', 'GET', '/v1/direct');
    const decided = await inboundDecisions();
    const res = await intoResearcher('planner', 'GET', '/v1/direct', [ticket]);
    expect(res.status).toBe(200);
    expect(Object.keys((JSON.parse(res.body) as EchoBody).headers)).not.toContain(TICKET_HEADER);
    expect(await inboundDecisions()).toBe(decided);
  });

  it.each<[string, string, () => Promise<{ who: 'planner' | 'payments'; method: string; path: string; tickets: string[] }>]>([
    ['forged under a key of its own', 'bad_mac', async () => {
      const real = openTicket(await ticketFor('researcher.agents', 'GET', '/v1/x'));
      const claims = { ...(real?.claims ?? ({} as never)), method: 'DELETE', path: '/admin/forged', decisionId: randomUUID() };
      return { who: 'planner', method: 'DELETE', path: '/admin/forged', tickets: [sealTicket(claims, { keyId: real?.keyId ?? 1, key: randomBytes(32) }) ?? ''] };
    }],
    // MACed under payments' key, which researcher's sidecar does not hold: it cannot even verify it.
    ['for another destination (payments)', 'bad_mac', async () => ({ who: 'planner', method: 'POST', path: '/v1/charge', tickets: [await ticketFor('payments.agents', 'POST', '/v1/charge')] })],
    ['for another method', 'mismatch', async () => ({ who: 'planner', method: 'DELETE', path: '/v1/other-method', tickets: [await ticketFor('researcher.agents', 'GET', '/v1/other-method')] })],
    ['for another path', 'mismatch', async () => ({ who: 'planner', method: 'GET', path: '/admin/other-path', tickets: [await ticketFor('researcher.agents', 'GET', '/v1/other-path')] })],
    ['for the same path spelt otherwise', 'mismatch', async () => ({ who: 'planner', method: 'GET', path: '/v1/../admin/dots', tickets: [await ticketFor('researcher.agents', 'GET', '/v1/dots')] })],
    ['carried by another peer identity', 'wrong_source', async () => ({ who: 'payments', method: 'GET', path: '/v1/carried', tickets: [await ticketFor('researcher.agents', 'GET', '/v1/carried')] })],
    ['sent twice in one request', 'malformed', async () => {
      const t = await ticketFor('researcher.agents', 'GET', '/v1/twice');
      return { who: 'payments', method: 'GET', path: '/v1/twice', tickets: [t, t] };
    }],
    ['not a ticket at all', 'malformed', () => Promise.resolve({ who: 'payments' as const, method: 'GET', path: '/v1/garbage', tickets: ['not*a*ticket'] })],
  ])('a ticket %s falls back to a decision, which denies: the app never sees the call', async (_name, reason, attempt) => {
    const { who, method, path, tickets } = await attempt();
    const [rejected, decided] = [await ingress('airlock_sidecar_ticket_rejections_total', `reason="${reason}"`), await inboundDecisions()];
    const res = await intoResearcher(who, method, path, tickets);
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'denied' });
    expect(reached(path)).toBe(false);
    expect(await ingress('airlock_sidecar_ticket_rejections_total', `reason="${reason}"`)).toBe(rejected + 1);
    expect(await inboundDecisions()).toBe(decided + 1);
  });

  it('a ticket issued before its source was quarantined is refused once the quarantine is pushed, and the call denied', async () => {
    const before = await ticketFor('researcher.agents', 'GET', '/v1/quarantined');
    const planner = mesh.agent('planner').identity;
    await adminPost(mesh.creds, '/v1/agents/quarantine', { identity: planner, reason: 'exfiltration' });
    try {
      for (let i = 0; i < 500 && (await ingress('airlock_sidecar_contained_identities')) < 1; i++) await new Promise((r) => setTimeout(r, 20));
      const res = await intoResearcher('planner', 'GET', '/v1/quarantined', [before]);
      expect(res.status).toBe(403);
      expect(reached('/v1/quarantined')).toBe(false);
      expect(await ingress('airlock_sidecar_ticket_rejections_total', 'reason="contained"')).toBe(1);
    } finally {
      await adminPost(mesh.creds, '/v1/agents/release', { identity: planner });
    }
    for (let i = 0; i < 500 && (await ingress('airlock_sidecar_contained_identities')) > 0; i++) await new Promise((r) => setTimeout(r, 20));
  });

  it('a replayed ticket and an expired one fall back to a decision, which follows the policy changed since they were issued', async () => {
    const used = await ticketFor('researcher.agents', 'GET', '/v1/replayed');
    expect((await intoResearcher('planner', 'GET', '/v1/replayed', [used])).status).toBe(200);
    const expiring = await ticketFor('researcher.agents', 'GET', '/v1/expired');
    const expiresAt = openTicket(expiring)?.claims.expiresAt ?? 0;
    mesh.agent('researcher').received.length = 0;
    expect(((await adminPost(mesh.creds, '/v1/policy/apply', { yaml: NARROWED })) as { changed: boolean }).changed).toBe(true);

    const [replays, decided] = [await ingress('airlock_sidecar_ticket_rejections_total', 'reason="replayed"'), await inboundDecisions()];
    const replayed = await intoResearcher('planner', 'GET', '/v1/replayed', [used]);
    expect(replayed.status).toBe(403);
    expect(await ingress('airlock_sidecar_ticket_rejections_total', 'reason="replayed"')).toBe(replays + 1);

    while (Date.now() <= expiresAt) await new Promise((r) => setTimeout(r, 50));
    const expired = await intoResearcher('planner', 'GET', '/v1/expired', [expiring]);
    expect(expired.status).toBe(403);
    expect(await ingress('airlock_sidecar_ticket_rejections_total', 'reason="expired"')).toBe(1);
    expect(await inboundDecisions()).toBe(decided + 2);
    expect(mesh.agent('researcher').received).toEqual([]);
  });

  it('a ticket for another instance of the same identity falls back to a decision, which denies', { timeout: 60_000 }, async () => {
    // A second sidecar of researcher's identity (a second pod): the control plane now routes researcher.agents to it.
    // Last in this file: researcher's first sidecar is no longer the upstream its decisions name.
    // (The policy allows /v2/* since the test above.)
    const researcher = mesh.agent('researcher');
    const second = spawnAirlock('sidecar researcher-2', [
      'sidecar',
      '--trust-domain', mesh.trustDomain,
      '--control-plane', `127.0.0.1:${mesh.grpcPort}`,
      '--ca-file', join(mesh.dataDir, 'trust-bundle.pem'),
      '--outbound-listen', '127.0.0.1:0',
      '--inbound-listen', '127.0.0.1:0',
      '--admin-listen', '127.0.0.1:0',
      '--app-port', String(researcher.appPort),
    ], { logFile: join(mesh.dir, 'sidecar-researcher-2.log'), env: { AIRLOCK_JOIN_TOKEN: await mesh.createJoinToken(researcher.identity) } });
    try {
      const listening = await second.logLine('sidecar listening; obtaining an SVID');
      await waitReady(second, `http://127.0.0.1:${String(listening.admin)}/readyz`);
      const elsewhere = `127.0.0.1:${String(listening.inbound)}`;
      let ticket = '';
      for (let i = 0; i < 100 && openTicket(ticket)?.claims.instance !== elsewhere; i++) ticket = await ticketFor('researcher.agents', 'GET', '/v2/instance');
      expect(openTicket(ticket)?.claims.instance).toBe(elsewhere);
      const [rejected, decided] = [await ingress('airlock_sidecar_ticket_rejections_total', 'reason="wrong_instance"'), await inboundDecisions()];
      // (Its path differs too; the instance is checked first.)
      const res = await intoResearcher('planner', 'GET', '/admin/instance', [ticket]);
      expect(res.status).toBe(403);
      expect(reached('/admin/instance')).toBe(false);
      expect(await ingress('airlock_sidecar_ticket_rejections_total', 'reason="wrong_instance"')).toBe(rejected + 1);
      expect(await inboundDecisions()).toBe(decided + 1);
      // Exactly the call it names, at the wrong instance: still decided afresh (which allows it), not admitted on the ticket.
      expect((await intoResearcher('planner', 'GET', '/v2/instance', [ticket])).status).toBe(200);
      expect(await ingress('airlock_sidecar_ticket_rejections_total', 'reason="wrong_instance"')).toBe(rejected + 2);
      expect(await inboundDecisions()).toBe(decided + 2);
    } finally {
      await second.stop();
    }
  });
});
