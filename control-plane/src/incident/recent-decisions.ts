import type { AuditLog, DecisionRecord } from '../audit/event.ts';
import type { IncidentDecision } from '../store/store.ts';

/** Decisions kept per identity (as source or destination): the last ones before a quarantine. */
export const DECISIONS_PER_IDENTITY = 32;
/** Identities with a ring; past this the one that got its ring first loses it. */
export const MAX_IDENTITIES = 2048;

interface Ring {
  readonly at: number[];
  readonly records: DecisionRecord[];
  /** Where the next one goes. */
  next: number;
}

/**
 * The last decisions naming each identity, in this replica's memory, for incident records. Kept
 * here rather than read back from the audit trail: the trail is write-only (files rotated by
 * others, syslog, an HTTP collector), so reading it back is unbounded or impossible, while this
 * costs one map lookup and two array writes per decision and at most
 * MAX_IDENTITIES × DECISIONS_PER_IDENTITY references to records the audit trail built anyway.
 */
export class RecentDecisions {
  readonly #rings = new Map<string, Ring>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** `audit`, with every decision also kept here. */
  tee(audit: AuditLog): AuditLog {
    return {
      decision: (record) => {
        this.record(record);
        audit.decision(record);
      },
      refusal: (record) => audit.refusal(record),
      admin: (record) => audit.admin(record),
      anomaly: (record) => audit.anomaly(record),
      accepting: () => audit.accepting(),
    };
  }

  record(record: DecisionRecord): void {
    const at = this.#now();
    if (record.source !== '') this.#push(record.source, at, record);
    if (record.destination !== '' && record.destination !== record.source) this.#push(record.destination, at, record);
  }

  /** Decisions naming any of `identities` from `since` (inclusive) to `until` (exclusive), oldest first, at most `limit` (the newest kept). */
  between(identities: Iterable<string>, since: number, until: number, limit: number): IncidentDecision[] {
    const seen = new Set<string>();
    const found: IncidentDecision[] = [];
    for (const identity of identities) {
      const ring = this.#rings.get(identity);
      if (ring === undefined) continue;
      ring.records.forEach((r, i) => {
        const at = ring.at[i] ?? 0;
        if (at < since || at >= until || seen.has(r.decisionId)) return;
        seen.add(r.decisionId);
        found.push(summary(r, at));
      });
    }
    found.sort((a, b) => a.at - b.at);
    return found.slice(-limit);
  }

  #push(identity: string, at: number, record: DecisionRecord): void {
    let ring = this.#rings.get(identity);
    if (ring === undefined) {
      if (this.#rings.size >= MAX_IDENTITIES) {
        const oldest = this.#rings.keys().next();
        if (oldest.done !== true) this.#rings.delete(oldest.value);
      }
      ring = { at: [], records: [], next: 0 };
      this.#rings.set(identity, ring);
    }
    ring.at[ring.next] = at;
    ring.records[ring.next] = record;
    ring.next = (ring.next + 1) % DECISIONS_PER_IDENTITY;
  }
}

function summary(r: DecisionRecord, at: number): IncidentDecision {
  return {
    at,
    decisionId: r.decisionId,
    direction: r.direction,
    source: r.source,
    destination: r.destination,
    host: r.host,
    method: r.method,
    path: r.path,
    ...(r.mcp?.tool === undefined || r.mcp.tool === '' ? {} : { mcpTool: r.mcp.tool }),
    verdict: r.verdict,
    policy: r.policy,
    reason: r.reason,
  };
}
