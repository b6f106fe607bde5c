import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuthorizationServiceClient, Direction, AuthorizeRequest, type AuthorizeResponse } from '@airlock/proto/authorization/v1';
import { CONTROL_PLANE_CHANNEL_OPTIONS } from '../sidecar/src/controlplane/credentials.ts';
import type { Mesh } from './support/mesh.ts';
import { startStandardMesh } from './support/standard-mesh.ts';
import { obtainSvid } from './support/svid.ts';

/**
 * A compromised sidecar holding a genuine SVID for planner tries to get decisions about other
 * identities straight from the control plane's gRPC API.
 */
describe('Authorize about another identity', () => {
  let mesh: Mesh;
  let client: AuthorizationServiceClient;

  beforeAll(async () => {
    mesh = await startStandardMesh();
    const svid = await obtainSvid(mesh, `spiffe://${mesh.trustDomain}/ns/agents/sa/rogue`);
    client = new AuthorizationServiceClient(
      `127.0.0.1:${mesh.grpcPort}`,
      credentials.createSsl(Buffer.from(svid.ca), Buffer.from(svid.keyPem), Buffer.from(svid.certChainPem), { checkServerIdentity: () => undefined }),
      CONTROL_PLANE_CHANNEL_OPTIONS,
    );
  });
  afterAll(async () => {
    client.close();
    await mesh.close();
  });

  function authorize(request: Partial<AuthorizeRequest>): Promise<AuthorizeResponse> {
    const full = AuthorizeRequest.fromPartial({
      direction: Direction.DIRECTION_OUTBOUND,
      destinationHost: 'payments.agents',
      destinationPort: 80,
      method: 'POST',
      path: '/v1/charge',
      ...request,
    });
    return new Promise((resolve, reject) =>
      client.authorize(full, new Metadata(), { deadline: Date.now() + 5000 }, (err, res) => (err === null ? resolve(res) : reject(err))),
    );
  }

  it('answers about itself (the control case)', async () => {
    const res = await authorize({ sourceSpiffeId: `spiffe://${mesh.trustDomain}/ns/agents/sa/rogue` });
    expect(res.verdict).toBe(2); // DENY: rogue is in no segment
    expect(res.decisionId).not.toBe('');
  });

  it.each<[string, Partial<AuthorizeRequest>]>([
    ['an OUTBOUND call claiming to be planner', { sourceSpiffeId: 'spiffe://e2e.test/ns/agents/sa/planner' }],
    [
      'an INBOUND call claiming to be payments',
      { direction: Direction.DIRECTION_INBOUND, sourceSpiffeId: 'spiffe://e2e.test/ns/agents/sa/planner', destinationSpiffeId: 'spiffe://e2e.test/ns/agents/sa/payments' },
    ],
  ])('refuses %s with PERMISSION_DENIED', async (_name, request) => {
    const err = await authorize(request).then(
      () => undefined,
      (e: unknown) => e as ServiceError,
    );
    expect(err?.code).toBe(status.PERMISSION_DENIED);
  });
});
