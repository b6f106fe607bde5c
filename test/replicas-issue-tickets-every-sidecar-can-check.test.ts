// Every control-plane replica on one etcd issues tickets under the same per-destination keys
// (HKDF from a secret in the store, sealed with the shared key-encryption key): a ticket one replica
// issued verifies under the keys another pushes to the destination's sidecar, also across a
// rotation made by either.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata } from '@grpc/grpc-js';
import { openTicket, ticketMacValid, type OpenedTicket } from '@airlock/common/ticket';
import { AuthorizationServiceClient, AuthorizeRequest, Direction, Verdict, type AuthorizeResponse } from '@airlock/proto/authorization/v1';
import { IdentityServiceClient, type SignCertificateResponse, type WatchTrustBundleResponse } from '@airlock/proto/identity/v1';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningControlPlane } from '../control-plane/src/main.ts';
import { adminFetch } from '../control-plane/src/testing/test-control-plane.ts';
import { CONTROL_PLANE_CHANNEL_OPTIONS } from '../sidecar/src/controlplane/credentials.ts';
import { newKeyAndCsr } from '../sidecar/src/identity/key-and-csr.ts';
import { startEtcd, type EtcdCluster } from './support/etcd.ts';
import { startReplica } from './support/replicas.ts';

const TD = 'airlock.test';
const PLANNER = `spiffe://${TD}/ns/demo/sa/planner`;
const RESEARCHER = `spiffe://${TD}/ns/demo/sa/researcher`;
const POLICY = `apiVersion: airlock.dev/v1
kind: Segment
metadata: { name: all }
spec: { selector: { namespace: demo } }
---
apiVersion: airlock.dev/v1
kind: Policy
metadata: { name: all-to-all }
spec: { from: { segments: [all] }, to: { segments: [all] }, action: allow }
`;

interface Held {
  readonly keyPem: string;
  readonly certChainPem: string;
}

describe('tickets across control-plane replicas on etcd', () => {
  let etcd: EtcdCluster;
  let dir: string;
  let a: RunningControlPlane;
  let b: RunningControlPlane;
  const svids = new Map<string, Held>();

  const channel = (cp: RunningControlPlane, held?: Held) =>
    credentials.createSsl(Buffer.from(cp.trustBundle()), held === undefined ? null : Buffer.from(held.keyPem), held === undefined ? null : Buffer.from(held.certChainPem), { checkServerIdentity: () => undefined });

  /** Joins `identity` through `cp` as a sidecar does (registered at a made-up inbound address). */
  async function join_(cp: RunningControlPlane, identity: string): Promise<Held> {
    const res = await adminFetch(cp, '/v1/join-tokens', { method: 'POST', headers: { authorization: `Bearer ${cp.adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ identity }) });
    const { token } = (await res.json()) as { token: string };
    const { keyPem, csrPem } = await newKeyAndCsr();
    const client = new IdentityServiceClient(`127.0.0.1:${cp.grpcPort}`, channel(cp), CONTROL_PLANE_CHANNEL_OPTIONS);
    try {
      const svid = await new Promise<SignCertificateResponse>((resolve, reject) => client.signCertificate({ csrPem, joinToken: token, inboundAddress: '127.0.0.1:9' }, (err, r) => (err === null ? resolve(r) : reject(err))));
      return { keyPem, certChainPem: svid.certChainPem };
    } finally {
      client.close();
    }
  }

  async function ticketFrom(cp: RunningControlPlane): Promise<OpenedTicket> {
    const client = new AuthorizationServiceClient(`127.0.0.1:${cp.grpcPort}`, channel(cp, svids.get(PLANNER)), CONTROL_PLANE_CHANNEL_OPTIONS);
    const request = AuthorizeRequest.fromPartial({ direction: Direction.DIRECTION_OUTBOUND, sourceSpiffeId: PLANNER, destinationHost: 'researcher.demo', destinationPort: 80, method: 'GET', path: '/v1/x' });
    try {
      const res = await new Promise<AuthorizeResponse>((resolve, reject) => client.authorize(request, new Metadata(), { deadline: Date.now() + 5000 }, (err, r) => (err === null ? resolve(r) : reject(err))));
      expect(res.verdict).toBe(Verdict.VERDICT_ALLOW);
      const ticket = openTicket(res.ticket);
      if (ticket === undefined) throw new Error('no ticket issued');
      return ticket;
    } finally {
      client.close();
    }
  }

  /** researcher's WatchTrustBundle on `cp`: every message, until closed. */
  function watchAsResearcher(cp: RunningControlPlane): { messages: WatchTrustBundleResponse[]; close(): void } {
    const client = new IdentityServiceClient(`127.0.0.1:${cp.grpcPort}`, channel(cp, svids.get(RESEARCHER)), CONTROL_PLANE_CHANNEL_OPTIONS);
    const messages: WatchTrustBundleResponse[] = [];
    const call = client.watchTrustBundle({});
    call.on('data', (m: WatchTrustBundleResponse) => messages.push(m));
    call.on('error', () => undefined);
    return {
      messages,
      close: () => {
        call.cancel();
        client.close();
      },
    };
  }

  const verifies = (msg: WatchTrustBundleResponse | undefined, t: OpenedTicket): boolean => (msg?.ticketKeys ?? []).some((k) => k.keyId === t.keyId && ticketMacValid(t, Buffer.from(k.key)));

  async function eventually(probe: () => boolean | Promise<boolean>, what: string): Promise<void> {
    const until = Date.now() + 15_000;
    while (!(await probe())) {
      if (Date.now() > until) throw new Error(`never: ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  beforeAll(async () => {
    etcd = await startEtcd(1);
    dir = mkdtempSync(join(tmpdir(), 'airlock-replica-tickets-'));
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    const kekFile = join(dir, 'kek');
    writeFileSync(kekFile, randomBytes(32).toString('base64'), { mode: 0o600 });
    // Started at once: of the two first ticket secrets they race to store, one is kept.
    [a, b] = await Promise.all([
      startReplica({ etcd, dir, trustDomain: TD, kekFile, policyFile: join(dir, 'policy.yaml'), name: 'a', flags: { ticketKeyRotation: '3s' } }),
      startReplica({ etcd, dir, trustDomain: TD, kekFile, name: 'b', flags: { ticketKeyRotation: '3s' } }),
    ]);
    svids.set(PLANNER, await join_(a, PLANNER));
    svids.set(RESEARCHER, await join_(b, RESEARCHER));
  }, 90_000);
  afterAll(async () => {
    await a.close();
    await b.close();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a ticket either replica issues verifies under the keys either pushes to the destination's sidecar, across rotations", { timeout: 60_000 }, async () => {
    const onA = watchAsResearcher(a);
    const onB = watchAsResearcher(b);
    try {
      await eventually(() => onA.messages.length > 0 && onB.messages.length > 0, 'a first push from each replica');
      for (const cp of [a, b]) {
        const t = await ticketFrom(cp);
        expect(verifies(onA.messages.at(-1), t) && verifies(onB.messages.at(-1), t)).toBe(true);
      }
      // A rotation (whichever replica stores it) reaches the sidecars of both; tickets from either verify.
      const first = Math.max(...(onB.messages.at(-1)?.ticketKeys ?? []).map((k) => k.keyId));
      const newest = (m: { messages: WatchTrustBundleResponse[] }): number => Math.max(0, ...(m.messages.at(-1)?.ticketKeys ?? []).map((k) => k.keyId));
      await eventually(() => newest(onA) > first && newest(onB) > first, 'a rotation pushed by both replicas');
      await eventually(async () => (await ticketFrom(a)).keyId > first && (await ticketFrom(b)).keyId > first, 'tickets under the new key');
      for (const cp of [a, b]) {
        const t = await ticketFrom(cp);
        // (A later rotation may be on its way to one of the two: each holds the current and previous key.)
        await eventually(() => verifies(onA.messages.at(-1), t) && verifies(onB.messages.at(-1), t), `ticket under key ${t.keyId} verifies under both pushes`);
      }
    } finally {
      onA.close();
      onB.close();
    }
  });
});
