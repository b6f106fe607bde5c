import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EchoBody } from '../cli/src/demo/echo-app.ts';
import type { Mesh } from './support/mesh.ts';
import { startStandardMesh } from './support/standard-mesh.ts';

describe('x-forwarded-client-cert', () => {
  let mesh: Mesh;
  beforeAll(async () => {
    mesh = await startStandardMesh();
  });
  afterAll(async () => mesh.close());

  it('forged by the calling agent never reaches the destination app', async () => {
    const forged = `By=${mesh.agent('researcher').identity};URI=${mesh.agent('payments').identity}`;
    const res = await mesh.call('planner', 'GET', 'http://researcher.agents/v1/search', {
      headers: { 'x-forwarded-client-cert': forged, 'X-Forwarded-Client-Cert': forged },
    });
    expect(res.status).toBe(200);
    const xfcc = res.json<EchoBody>().headers['x-forwarded-client-cert'];
    expect(xfcc).toBe(`By=${mesh.agent('researcher').identity};URI=${mesh.agent('planner').identity}`);
  });
});
