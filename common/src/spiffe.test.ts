import { describe, expect, it } from 'vitest';
import { meshHostOf, parseSpiffeId, spiffeIdFromSubjectAltName } from './spiffe.ts';

describe('parseSpiffeId', () => {
  it('parses the Kubernetes shape', () => {
    const id = parseSpiffeId('spiffe://airlock.demo/ns/demo/sa/researcher');
    expect(id).toMatchObject({ trustDomain: 'airlock.demo', namespace: 'demo', serviceAccount: 'researcher' });
    expect(meshHostOf(id)).toBe('researcher.demo');
  });

  it.each([
    ['http://airlock.demo/ns/demo/sa/x', 'must start with spiffe://'],
    ['spiffe://airlock.demo', 'needs a trust domain and a path'],
    ['spiffe://Airlock.demo/ns/demo/sa/x', 'trust domain'],
    ['spiffe://airlock.demo/ns/demo/sa', '/ns/<namespace>/sa/<service-account>'],
    ['spiffe://airlock.demo/ns/demo/sa/x/extra', '/ns/<namespace>/sa/<service-account>'],
    ['spiffe://airlock.demo/ns/De_mo/sa/x', 'namespace'],
    ['spiffe://airlock.demo/ns/demo/sa/..', 'service account'],
    ['spiffe://airlock.demo/ns/demo/sa/a%2Fb', 'service account'],
  ])('rejects %s', (uri, why) => {
    expect(() => parseSpiffeId(uri)).toThrow(why);
  });
});

describe('spiffeIdFromSubjectAltName', () => {
  it('takes the single URI SAN', () => {
    expect(spiffeIdFromSubjectAltName('DNS:localhost, URI:spiffe://td/ns/a/sa/b').uri).toBe('spiffe://td/ns/a/sa/b');
  });
  it.each([
    [undefined, 'has 0'],
    ['DNS:localhost', 'has 0'],
    ['URI:spiffe://td/ns/a/sa/b, URI:spiffe://td/ns/a/sa/c', 'has 2'],
    ['URI:https://example.com/x', 'must start with spiffe://'],
  ])('refuses %s', (san, why) => {
    expect(() => spiffeIdFromSubjectAltName(san)).toThrow(why);
  });
});
