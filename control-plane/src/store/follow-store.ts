import { Counter, type Registry } from 'prom-client';
import { errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import type { AgentRegistry } from '../authz/registry.ts';
import type { TicketKeys } from '../authz/tickets/ticket-keys.ts';
import type { CaRing } from '../ca/ca-ring.ts';
import type { Revocations } from '../ca/revocations.ts';
import type { Quarantines } from '../incident/quarantines.ts';
import type { ToolPins } from '../mcp-pins/tool-pins.ts';
import type { Baselines } from '../baselines/baselines.ts';
import type { PolicyStore } from '../policy/policy-store.ts';
import type { Store, StoreEvent } from './store.ts';

/** What a replica holds in memory for decisions, each following the changes other replicas store. */
export interface Followers {
  readonly agents: AgentRegistry;
  readonly revocations: Revocations;
  readonly policies: PolicyStore;
  readonly ring: CaRing;
  readonly quarantines: Quarantines;
  readonly ticketKeys: TicketKeys;
  readonly toolPins?: ToolPins;
  readonly baselines?: Baselines;
}

export interface StoreFollower {
  /** Hands the events seen so far, then every next one, to the holders. */
  start(followers: Followers): void;
  close(): Promise<void>;
}

/**
 * Watches the store from before the replica reads its state, so that nothing written in between is
 * missed (an event for something already read changes nothing); events wait until `start`.
 */
export async function watchStore(store: Store, log: Logger, registry: Registry): Promise<StoreFollower> {
  const troubles = new Counter({ name: 'airlock_store_watch_interruptions_total', help: 'Times the store watch was cut or failed (it resumes from the last revision it delivered).', registers: [registry] });
  let pending: StoreEvent[] | undefined = [];
  let followers: Followers | undefined;
  const apply = (event: StoreEvent, to: Followers): void => {
    const done = ((): Promise<void> => {
      switch (event.kind) {
        case 'agent':
          to.agents.follow(event.agent);
          return Promise.resolve();
        case 'revocation':
          return to.revocations.follow(event.revoked);
        case 'policy-version':
          return to.policies.follow(event.version);
        case 'ca-ring':
          return to.ring.reload();
        case 'quarantine':
          return to.quarantines.follow();
        case 'ticket-secrets':
          return to.ticketKeys.reload();
        case 'tool-pin':
          to.toolPins?.follow(event.pin);
          return Promise.resolve();
        case 'baseline':
          to.baselines?.follow(event.spiffeId, event.record);
          return Promise.resolve();
      }
    })();
    done.catch((err: unknown) => log.error({ event: event.kind, error: errorMessage(err) }, 'cannot apply a change from the store'));
  };
  const watch = await store.watch(
    (event) => {
      if (followers === undefined) pending?.push(event);
      else apply(event, followers);
    },
    (why) => {
      troubles.inc();
      log.warn({ why }, 'store watch');
    },
  );
  return {
    start(to) {
      followers = to;
      for (const event of pending ?? []) apply(event, to);
      pending = undefined;
    },
    close: () => watch.close(),
  };
}
