import { createRootLogger } from '@airlock/common/logging';
import { createRegistry } from '@airlock/common/telemetry';
import { describe, expect, it } from 'vitest';
import type { Store, StoreEvent } from './store.ts';
import { watchStore, type Followers } from './follow-store.ts';

/** A store whose watch the test drives: events and interruptions as etcd's watch reports them. */
function drivenStore(): { store: Store; emit(e: StoreEvent): void; interrupt(why: string): void } {
  let onEvent: (e: StoreEvent) => void = () => undefined;
  let onTrouble: (why: string) => void = () => undefined;
  const store = {
    watch: (e: (e: StoreEvent) => void, t: (why: string) => void) => {
      onEvent = e;
      onTrouble = t;
      return Promise.resolve({ close: () => Promise.resolve() });
    },
  } as unknown as Store;
  return { store, emit: (e) => onEvent(e), interrupt: (why) => onTrouble(why) };
}

describe('following the store', () => {
  it('holds the events seen before start, then hands every one over in order', async () => {
    const driven = drivenStore();
    const follower = await watchStore(driven.store, createRootLogger({ process: 't', level: 'silent' }), createRegistry('t'));
    const seen: string[] = [];
    const followers = {
      agents: { follow: (a: { spiffeId: string }) => seen.push(`agent ${a.spiffeId}`) },
      revocations: { follow: (r: { spiffeId: string }) => Promise.resolve(void seen.push(`revoked ${r.spiffeId}`)) },
      policies: { follow: (v: number) => Promise.resolve(void seen.push(`policy ${v}`)) },
      ring: { reload: () => Promise.resolve(void seen.push('ca')) },
      quarantines: { follow: () => Promise.resolve(void seen.push('quarantine')) },
      toolPins: { follow: (p: { server: string; tool: string }) => void seen.push(`pin ${p.server} ${p.tool}`) },
    } as unknown as Followers;
    driven.emit({ kind: 'agent', agent: { spiffeId: 'a', inboundAddress: 'x:1', updatedAt: 1 } });
    driven.emit({ kind: 'policy-version', version: 2 });
    expect(seen).toEqual([]);
    follower.start(followers);
    driven.emit({ kind: 'revocation', revoked: { spiffeId: 'b', revokedAt: 1 } });
    driven.emit({ kind: 'ca-ring' });
    driven.emit({ kind: 'quarantine' });
    driven.emit({ kind: 'tool-pin', pin: { server: 'h:443', tool: 't', hash: '', pinnedAt: 1, pinnedBy: '' } });
    expect(seen).toEqual(['agent a', 'policy 2', 'revoked b', 'ca', 'quarantine', 'pin h:443 t']);
  });

  it('counts every interruption of the watch', async () => {
    const driven = drivenStore();
    const registry = createRegistry('t');
    await watchStore(driven.store, createRootLogger({ process: 't', level: 'silent' }), registry);
    driven.interrupt('cut');
    driven.interrupt('cut again');
    expect(await registry.getSingleMetricAsString('airlock_store_watch_interruptions_total')).toMatch(/^airlock_store_watch_interruptions_total(\{[^}]*\})? 2$/m);
  });
});
