import { describe, expect, it } from 'vitest';
import { MAX_TICKET_TTL_MS } from '@airlock/common/ticket';
import { controlPlaneConfig } from './config.ts';

describe('ticket settings', () => {
  it('default to a 2 s ticket and a daily key rotation', () => {
    const c = controlPlaneConfig.load({});
    expect(c.ticketTtl).toBe(2000);
    expect(c.ticketKeyRotation).toBe(86_400_000);
  });

  it('take a ticket lifetime up to 10 s and refuse a longer one', () => {
    expect(controlPlaneConfig.load({ flags: { ticketTtl: '10s' } }).ticketTtl).toBe(MAX_TICKET_TTL_MS);
    expect(() => controlPlaneConfig.load({ flags: { ticketTtl: '11s' } })).toThrow(/ticket-ttl.*must be at most 10000ms/s);
    expect(() => controlPlaneConfig.load({ env: { AIRLOCK_TICKET_TTL: '1m' } })).toThrow(/AIRLOCK_TICKET_TTL: must be at most 10000ms/);
  });
});
