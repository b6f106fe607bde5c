import { randomBytes } from 'node:crypto';
import type { IncidentRecord, QuarantineRecord, Store } from '../store/store.ts';
import type { Quarantines } from './quarantines.ts';
import { targetOf, type QuarantineTarget } from './quarantine-target.ts';
import type { RecentDecisions } from './recent-decisions.ts';

/** Identities an incident record names at most (a segment can match many; `matchedTotal` counts all). */
export const MAX_MATCHED = 200;
/** Decisions an incident record keeps before, and after, at most (the newest). */
export const MAX_INCIDENT_DECISIONS = 200;

/** `inc-20261204T124501.123Z-3fa2c1`: sorts by when it was opened (to the millisecond), unique by its random tail. */
function incidentId(at: number): string {
  return `inc-${new Date(at).toISOString().replace(/[-:]/g, '')}-${randomBytes(3).toString('hex')}`;
}

/**
 * Incident records, one per quarantine from set to release, kept in the store (shared by replicas):
 * who, when, why, what it contained and the decisions naming those identities just before and while
 * it held. Decisions come from this replica's RecentDecisions (the replica that answers the admin call).
 */
export class Incidents {
  readonly #store: Store;
  readonly #quarantines: Quarantines;
  readonly #recent: RecentDecisions;

  constructor(deps: { readonly store: Store; readonly quarantines: Quarantines; readonly recent: RecentDecisions }) {
    this.#store = deps.store;
    this.#quarantines = deps.quarantines;
    this.#recent = deps.recent;
  }

  /** After a quarantine was set: opens its incident, or updates the open one of the same target (set again). */
  async opened(q: QuarantineRecord, target: QuarantineTarget, role: string): Promise<IncidentRecord> {
    const matched = this.#quarantines.matching(target);
    const stored = await this.#store.openIncidentOf(q.spiffeId);
    // One that ran out by its until is over: setting it again opens a new incident.
    const open = stored !== undefined && (stored.until === undefined || stored.until > q.since) ? stored : undefined;
    const record: IncidentRecord =
      open === undefined
        ? {
            id: incidentId(q.since),
            target: q.spiffeId,
            reason: q.reason,
            openedBy: q.actor,
            openedByRole: role,
            openedAt: q.since,
            ...(q.until === undefined ? {} : { until: q.until }),
            matched: matched.slice(0, MAX_MATCHED),
            matchedTotal: matched.length,
            before: this.#recent.between(matched, 0, q.since + 1, MAX_INCIDENT_DECISIONS),
          }
        : { ...withoutUntil(open), reason: q.reason, ...(q.until === undefined ? {} : { until: q.until }), ...union(open, matched) };
    await this.#store.saveIncident(record);
    return record;
  }

  /** After a release: closes the open incident of `key` with the decisions since it was set. */
  async released(key: string, target: QuarantineTarget, by: string, at: number): Promise<IncidentRecord | undefined> {
    const open = await this.#store.openIncidentOf(key);
    if (open === undefined) return undefined;
    // Agents that joined while it held were contained too: their decisions count.
    const all = { ...open, ...union(open, this.#quarantines.matching(target)) };
    // Calls after it ran out by its until were not contained: not its decisions.
    const record: IncidentRecord = { ...all, releasedAt: at, releasedBy: by, after: this.#after(all, Math.min(at, open.until ?? at)) };
    await this.#store.saveIncident(record);
    return record;
  }

  list(limit: number): Promise<IncidentRecord[]> {
    return this.#store.listIncidents(limit);
  }

  /** The record; while open, with the decisions so far (from this replica). */
  async show(id: string, now = Date.now()): Promise<IncidentRecord | undefined> {
    const r = await this.#store.getIncident(id);
    if (r === undefined || r.releasedAt !== undefined) return r;
    const all = { ...r, ...union(r, this.#quarantines.matching(targetOf(r.target))) };
    return { ...all, after: this.#after(all, now + 1) };
  }

  #after(r: IncidentRecord, until: number): IncidentRecord['before'] {
    return this.#recent.between(r.matched, r.openedAt + 1, until, MAX_INCIDENT_DECISIONS);
  }
}

/** `r` without its end (set again without --ttl: until released). */
function withoutUntil(r: IncidentRecord): IncidentRecord {
  const rest = { ...r };
  delete (rest as { until?: number }).until;
  return rest;
}

function union(r: IncidentRecord, matched: readonly string[]): Pick<IncidentRecord, 'matched' | 'matchedTotal'> {
  const all = [...new Set([...r.matched, ...matched])];
  return { matched: all.slice(0, MAX_MATCHED), matchedTotal: Math.max(r.matchedTotal, all.length) };
}
