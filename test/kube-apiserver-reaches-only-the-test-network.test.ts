import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:https';
import { networkInterfaces } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundPort, closeServer, listen } from '@airlock/common/net';
import { createTestCa } from '../sidecar/src/testing/certs.ts';
import { startKubeApiServer, type KubeApiServer, type KubeResponse } from './support/kube-apiserver.ts';

/**
 * The API server the Kubernetes tests start may dial webhooks and ClusterIPs: it runs in a network
 * namespace whose only route is to the host end of its veth pair (test/support/kube-apiserver.ts).
 * The destinations tried here are the host's own addresses: were the namespace not closed, the
 * traffic would still stay on this machine.
 */
describe('the test kube-apiserver', () => {
  let kube: KubeApiServer;
  let webhook: Server;
  const reviewed: string[] = [];
  const ca = createTestCa('webhook CA');

  beforeAll(async () => {
    kube = await startKubeApiServer({ hostNames: ['webhook.airlock.test'] });
    const cert = ca.issue({ dnsNames: ['webhook.airlock.test'] });
    // A validating webhook in the host namespace, on the host end of the veth pair only.
    webhook = createServer({ key: cert.keyPem, cert: cert.certPem }, (req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const review = JSON.parse(body) as { request: { uid: string; name?: string } };
        reviewed.push(review.request.name ?? '');
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: review.request.uid, allowed: true } }));
      });
    });
    await listen(webhook, { host: kube.hostAddress, port: 0 });
  });
  afterAll(async () => {
    await closeServer(webhook);
    await kube.stop();
  });

  it('has no route but the one to the host end of its veth pair', () => {
    const routes = execFileSync('ip', ['-n', kube.netns, '-4', 'route', 'show', 'table', 'all'], { encoding: 'utf8' });
    const nonLocal = routes.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('local ') && !l.startsWith('broadcast '));
    expect(nonLocal).toHaveLength(1);
    expect(nonLocal[0]).toMatch(new RegExp(`^${kube.address.replace(/\.\d+$/, '')}\\.\\d+/30 dev `));
    expect(execFileSync('ip', ['-n', kube.netns, '-6', 'route', 'show', 'table', 'all'], { encoding: 'utf8' }).trim()).toBe('');
  });

  async function webhookFor(name: string, url: string): Promise<void> {
    await kube.json('POST', '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations', {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: { name },
      webhooks: [{
        name: `${name}.airlock.test`,
        clientConfig: { url, caBundle: Buffer.from(ca.certPem).toString('base64') },
        rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['configmaps'] }],
        namespaceSelector: { matchLabels: { webhook: name } },
        failurePolicy: 'Fail',
        sideEffects: 'None',
        admissionReviewVersions: ['v1'],
      }],
    });
    await kube.createNamespace(name, { webhook: name });
  }

  /**
   * Creates ConfigMaps until `done` says the webhook took part: the API server reads webhook
   * configurations through an informer, so a new one applies a moment after it is stored.
   */
  async function createConfigMapsUntil(namespace: string, done: (res: KubeResponse<{ message?: string; metadata?: { name?: string } }>, name: string) => boolean): Promise<KubeResponse<{ message?: string; metadata?: { name?: string } }>> {
    for (let i = 0; ; i++) {
      const name = `cm-${i}`;
      const res = await kube.request<{ message?: string; metadata?: { name?: string } }>('POST', `/api/v1/namespaces/${namespace}/configmaps`, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name } });
      if (done(res, name) || i >= 100) return res;
      await sleep(100);
    }
  }

  it('calls a webhook on the host end of the veth pair, by a name the test maps to it', async () => {
    await webhookFor('reachable', `https://webhook.airlock.test:${boundPort(webhook)}/validate`);
    const res = await createConfigMapsUntil('reachable', (_res, name) => reviewed.includes(name));
    expect(res.status).toBe(201);
    expect(reviewed).toContain(res.body.metadata?.name);
  });

  it('cannot reach any other address of the host: the call fails for want of a route', async () => {
    const hostAddresses = Object.values(networkInterfaces()).flat()
      .filter((a) => a !== undefined && a.family === 'IPv4' && !a.internal && a.address !== kube.hostAddress)
      .map((a) => a?.address ?? '');
    for (const address of [...hostAddresses, '127.0.0.1'].slice(0, 2)) {
      const name = `unreachable-${address.replaceAll('.', '-')}`;
      await webhookFor(name, `https://${address}:${boundPort(webhook)}/validate`);
      const res = await createConfigMapsUntil(name, (r) => r.status !== 201);
      expect(res.status).toBe(500);
      // 127.0.0.1 is the namespace's own loopback, where nothing listens: refused, not unreachable.
      expect(res.body.message).toMatch(address === '127.0.0.1' ? /connection refused/ : /network is unreachable/);
    }
  });
});
