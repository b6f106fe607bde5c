import { randomBytes, randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Pool } from 'undici';
import { createRootLogger } from '@airlock/common/logging';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { sealTicket, TICKET_HEADER } from '@airlock/common/ticket';
import { createTestCa } from '../testing/certs.ts';
import { allow, deny, FakeAuthorizer, loopbackDestinations, StaticSvidSource, startEchoApp, svidFor, testMetrics, type EchoRequest } from '../testing/fakes.ts';
import { rawRequest } from '../testing/http-client.ts';
import { createOutboundServer } from '../outbound/outbound-server.ts';
import { UpstreamPools } from '../outbound/upstream-pools.ts';
import { createInboundServer } from './inbound-server.ts';
import { TicketCheck } from './ticket-check.ts';

const A = 'spiffe://airlock.test/ns/demo/sa/alice';
const B = 'spiffe://airlock.test/ns/demo/sa/bob';

describe('outbound → inbound with tickets (in-process authorizers)', () => {
  const ca = createTestCa();
  const bobKey = randomBytes(32);
  const { registry, metrics } = testMetrics();
  const logged: string[] = [];
  const logger = createRootLogger({ process: 'test', level: 'debug', destination: { write: (line: string) => void logged.push(line) } });
  const inboundAuthz = new FakeAuthorizer(() => deny('asked the control plane'));
  const outboundAuthz = new FakeAuthorizer(() => allow());
  const meshPools = new UpstreamPools();
  const { destinations, external } = loopbackDestinations();
  const trust = { ticketKey: (id: number) => (id === 1 ? bobKey : undefined), isContained: () => false };
  let app: { server: Server; port: number };
  let appPool: Pool;
  let inbound: HttpsServer;
  let outbound: Server;
  let instance = '';

  /** An allow for alice's call to bob carrying a ticket for exactly (method, path), under `key`. */
  const allowWithTicket = (method: string, path: string, key = bobKey) => () => {
    const now = Date.now();
    const claims = { decisionId: randomUUID(), source: A, destination: B, instance, host: 'bob.demo', port: 80, method, path, mcpMethod: '', mcpTool: '', mcpArgumentsDigest: '', policyVersion: 1, issuedAt: now, expiresAt: now + 2000 };
    return { ...allow({ address: instance, spiffeId: B }), ticket: sealTicket(claims, { keyId: 1, key }) ?? '' };
  };

  beforeAll(async () => {
    app = await startEchoApp();
    appPool = new Pool(`http://127.0.0.1:${app.port}`);
    inbound = createInboundServer({ identity: new StaticSvidSource(svidFor(ca, B)), authorizer: inboundAuthz, app: appPool, metrics, logger, tickets: { checker: new TicketCheck(trust), instance: () => instance } });
    await listen(inbound, { host: '127.0.0.1', port: 0 });
    instance = `127.0.0.1:${boundPort(inbound)}`;
    outbound = createOutboundServer({ identity: new StaticSvidSource(svidFor(ca, A)), authorizer: outboundAuthz, meshPools, external, destinations, metrics, logger });
    await listen(outbound, { host: '127.0.0.1', port: 0 });
  });
  afterAll(async () => {
    await closeServer(outbound);
    await closeServer(inbound);
    await closeServer(app.server);
    await Promise.all([appPool.destroy(), external.destroy(), meshPools.close()]);
  });
  beforeEach(() => {
    inboundAuthz.requests.length = 0;
    logged.length = 0;
  });

  it('admits the call its ticket names without asking, and neither app sees the header the agent set', async () => {
    outboundAuthz.decide = allowWithTicket('GET', '/v1/x');
    const res = await rawRequest(boundPort(outbound), { target: 'http://bob.demo/v1/x', headers: { [TICKET_HEADER]: 'agent-made' } });
    expect(res.status).toBe(200);
    const echo = JSON.parse(res.body) as EchoRequest;
    expect(echo.headers[TICKET_HEADER]).toBeUndefined();
    expect(echo.headers['x-forwarded-client-cert']).toBe(`By=${B};URI=${A}`);
    expect(inboundAuthz.requests).toEqual([]);
    expect(await registry.getSingleMetricAsString('airlock_sidecar_ticket_admissions_total')).toMatch(/ [1-9]\d*$/m);
  });

  it('asks on a ticket under another key, obeys the denial, and logs the refusal without the ticket or its MAC', async () => {
    const decide = allowWithTicket('GET', '/v1/y', randomBytes(32));
    let ticket = '';
    outboundAuthz.decide = () => {
      const d = decide();
      ticket = d.ticket;
      return d;
    };
    const res = await rawRequest(boundPort(outbound), { target: 'http://bob.demo/v1/y' });
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toMatchObject({ reason: 'asked the control plane' });
    expect(inboundAuthz.requests).toHaveLength(1);
    const refusal = logged.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'refused a ticket; asking the control plane');
    expect(refusal).toMatchObject({ reason: 'bad_mac', peer: A, keyId: 1 });
    const mac = Buffer.from(ticket, 'base64url').subarray(-32);
    for (const secret of [ticket, mac.toString('base64url'), mac.toString('base64'), mac.toString('hex'), bobKey.toString('hex'), bobKey.toString('base64')]) {
      expect(logged.join('\n')).not.toContain(secret);
    }
  });
});
