import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { createSidecarMetrics } from '../telemetry/metrics.ts';
import { quietLogger } from '../testing/fakes.ts';
import { ControlPlanePool, PerEndpoint } from './control-plane-pool.ts';
import { ControlPlaneEndpoints, type ResolveHost } from './endpoints.ts';

const A = '127.0.0.1:1';
const B = '127.0.0.1:2';
const C = '127.0.0.1:3';
const logger = quietLogger();

function setup(o: { addresses?: readonly string[]; resolve?: ResolveHost } = {}) {
  const configured = (o.addresses ?? [A, B, C]).map((a) => ({ host: a.split(':')[0] ?? '', port: Number(a.split(':')[1]) }));
  const endpoints = new ControlPlaneEndpoints({ configured, refreshMs: 60_000, logger, ...(o.resolve === undefined ? {} : { resolve: o.resolve }) });
  const registry = new Registry();
  const metrics = createSidecarMetrics(registry);
  let now = 1000;
  const pool = new ControlPlanePool({ endpoints, logger, metrics: { endpointUp: metrics.controlPlaneEndpointUp, failovers: metrics.controlPlaneFailovers }, random: () => 0, now: () => now, downForMs: 500 });
  const values = async (name: string): Promise<Record<string, number>> =>
    Object.fromEntries((await registry.getSingleMetric(name)?.get())?.values.map((v) => [Object.values(v.labels).join(','), v.value]) ?? []);
  return { endpoints, pool, values, advance: (ms: number) => (now += ms) };
}

const unavailable = new AirlockError(ErrorCode.UpstreamUnavailable, 'control plane unavailable');
const refused = new AirlockError(ErrorCode.Attestation, 'the control plane refused to sign');
const worthAnother = (err: unknown): boolean => err === unavailable;

describe('ControlPlanePool', () => {
  it('spreads over two healthy endpoints, then the spare, then those that gave no answer', () => {
    const { pool } = setup();
    const firsts = Array.from({ length: 6 }, () => pool.candidates());
    expect(firsts.map((c) => c[0])).toEqual([A, B, A, B, A, B]);
    expect(firsts[0]).toEqual([A, B, C]);
    expect(firsts[1]).toEqual([B, A, C]);
    pool.noAnswer(A);
    expect(pool.candidates()).toEqual([B, C, A]);
    expect(pool.candidates()).toEqual([C, B, A]);
  });

  it('tries an endpoint marked down again once its time is up, and counts it healthy on its next answer', async () => {
    const { pool, values, advance } = setup();
    pool.noAnswer(A);
    expect(await values('airlock_sidecar_control_plane_endpoint_up')).toEqual({ '0': 0, '1': 1, '2': 1 });
    advance(501);
    expect(pool.candidates()).toContain(A);
    expect(pool.candidates().slice(0, 2)).toContain(A);
    pool.answered(A);
    expect(await values('airlock_sidecar_control_plane_endpoint_up')).toEqual({ '0': 1, '1': 1, '2': 1 });
  });

  it('starts each sidecar at its own endpoint, so a fleet spreads over every replica', () => {
    const firstOf = (r: number): string | undefined => {
      const endpoints = new ControlPlaneEndpoints({ configured: [1, 2, 3].map((port) => ({ host: '127.0.0.1', port })), refreshMs: 60_000, logger });
      return new ControlPlanePool({ endpoints, logger, random: () => r }).candidates()[0];
    };
    expect(new Set([0, 1, 2].map((k) => firstOf((k + 0.5) / 0x7fffffff)))).toEqual(new Set([A, B, C]));
  });

  it('firstAnswer moves to the next endpoint only when one gave no answer, and counts the failovers', async () => {
    const { pool, values } = setup();
    const asked: string[] = [];
    const result = await pool.firstAnswer('sign', (address) => {
      asked.push(address);
      return address === B ? Promise.resolve('signed') : Promise.reject(unavailable);
    }, worthAnother);
    expect(result).toBe('signed');
    expect(asked).toEqual([A, B]);
    expect(await values('airlock_sidecar_control_plane_failovers_total')).toEqual({ sign: 1 });

    // A refusal is an answer: the next endpoint is not asked.
    asked.length = 0;
    await expect(pool.firstAnswer('sign', (address) => {
      asked.push(address);
      return Promise.reject(refused);
    }, worthAnother)).rejects.toBe(refused);
    expect(asked).toHaveLength(1);

    // None answers: every endpoint asked once, the last error.
    asked.length = 0;
    await expect(pool.firstAnswer('sign', (address) => {
      asked.push(address);
      return Promise.reject(unavailable);
    }, worthAnother)).rejects.toBe(unavailable);
    expect([...asked].sort()).toEqual([A, B, C]);
  });

  it('labels the health gauge by index, and resets it when the list changes', async () => {
    let ips = ['127.0.0.5', '127.0.0.6'];
    const { endpoints, values } = setup({ addresses: ['cp.test:9'], resolve: () => Promise.resolve(ips) });
    await endpoints.refresh();
    expect(await values('airlock_sidecar_control_plane_endpoint_up')).toEqual({ '0': 1, '1': 1 });
    ips = ['127.0.0.6'];
    await endpoints.refresh();
    expect(await values('airlock_sidecar_control_plane_endpoint_up')).toEqual({ '0': 1 });
  });
});

describe('PerEndpoint', () => {
  it('makes one item per address and closes those whose address left the list', async () => {
    let ips = ['127.0.0.5', '127.0.0.6'];
    const { endpoints } = setup({ addresses: ['cp.test:9'], resolve: () => Promise.resolve(ips) });
    await endpoints.refresh();
    const closed: string[] = [];
    const per = new PerEndpoint<{ address: string; close(): void }>(endpoints);
    const make = (address: string) => () => ({ address, close: () => void closed.push(address) });
    const first = per.get('127.0.0.5:9', make('127.0.0.5:9'));
    expect(per.get('127.0.0.5:9', make('again'))).toBe(first);
    per.get('127.0.0.6:9', make('127.0.0.6:9'));
    ips = ['127.0.0.6'];
    await endpoints.refresh();
    expect(closed).toEqual(['127.0.0.5:9']);
    per.close();
    expect(closed).toEqual(['127.0.0.5:9', '127.0.0.6:9']);
  });
});
