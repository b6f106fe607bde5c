import { describe, expect, it } from 'vitest';
import { quantityValue, resourcesProblems } from './quantity.ts';

describe('Kubernetes quantities', () => {
  it.each([
    ['100m', 0.1], ['1', 1], ['0.5', 0.5], ['.5', 0.5], ['64Mi', 64 * 2 ** 20], ['1Gi', 2 ** 30], ['1G', 1e9], ['128k', 128e3], ['1e3', 1000], ['2E', 2e18], ['0', 0],
  ])('reads %s', (s, v) => {
    expect(quantityValue(s)).toBeCloseTo(v);
  });

  it.each(['', 'abc', '1.5.5', '-1', '+1', '64MB', '64mi', '1 Gi', ' 1Gi', '1Gi ', '100mm', 'Mi', '1e', '0x10', '9'.repeat(80), '1e999'])('refuses %j', (s) => {
    expect(quantityValue(s)).toBeUndefined();
  });

  it('names each bad quantity and a request above its limit', () => {
    const where = (kind: string, name: string): string => `${kind}.${name}`;
    expect(resourcesProblems({ requests: { cpu: '100m', memory: '64Mi' }, limits: { cpu: '1', memory: '128Mi' } }, where)).toEqual([]);
    expect(resourcesProblems({ requests: { cpu: 'lots' }, limits: { memory: '1GB' } }, where)).toEqual([
      'requests.cpu: "lots" is not a Kubernetes quantity (e.g. 100m, 0.5, 64Mi, 1Gi)',
      'limits.memory: "1GB" is not a Kubernetes quantity (e.g. 100m, 0.5, 64Mi, 1Gi)',
    ]);
    expect(resourcesProblems({ requests: { memory: '1Gi' }, limits: { memory: '512Mi' } }, where)).toEqual(['requests.memory (1Gi) is more than limits.memory (512Mi)']);
  });
});
