import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { request } from 'node:https';
import { isDeepStrictEqual } from 'node:util';
import { Counter, Gauge, type Registry } from 'prom-client';
import { errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import type { DecisionState } from '../authz/decision-state.ts';
import type { ThreatFeedDoc } from './document.ts';
import { parseFeedInSlices, type ParsedFeed } from './entries.ts';
import { ThreatIndex } from './threat-index.ts';

/** A feed larger than this is refused (the last good copy stays): the index is held in memory. */
export const MAX_FEED_BYTES = 64 * 1024 * 1024;
/** How long one fetch of a URL feed may take. */
const FETCH_TIMEOUT_MS = 30_000;

/** What `GET /v1/threat-feeds` says of one feed. */
export interface ThreatFeedStatus {
  readonly name: string;
  readonly source: string;
  readonly format: ThreatFeedDoc['format'];
  readonly refreshSeconds: number;
  /** The copy in force: `sha256:` + 16 hex digits of its bytes; absent until one loads. */
  readonly version?: string;
  readonly entries: number;
  readonly badEntries: number;
  /** The first few bad lines (or indicators) of the copy in force, `line N: why`. */
  readonly badSamples: readonly string[];
  readonly loadedAt?: string;
  /** Seconds since the copy in force was read (a failing feed grows old). */
  readonly ageSeconds?: number;
  /** Why the last attempt failed; absent when it succeeded. */
  readonly lastError?: string;
  readonly lastAttemptAt?: string;
}

interface Good extends ParsedFeed {
  readonly version: string;
  /** When these bytes were last read (a reload of the same bytes renews it). */
  loadedAt: number;
}

interface Feed {
  readonly doc: ThreatFeedDoc;
  /** When this replica took the document up: a feed that never loaded is as old as that. */
  readonly since: number;
  good?: Good;
  lastError?: string;
  lastAttemptAt?: number;
  timer?: NodeJS.Timeout;
  closed: boolean;
}

export interface ThreatFeedsOptions {
  readonly decisions: DecisionState;
  readonly registry: Registry;
  readonly logger: Logger;
}

/**
 * The ThreatFeed documents in force, loaded and reloaded every `refreshSeconds` by each replica
 * (each reads the same source), and their entries published to decisions as one ThreatIndex. A
 * load that fails (unreadable, unreachable, not a STIX bundle, too large) keeps the last good copy
 * and says so (status, metrics); a bad line is counted and skipped.
 */
export class ThreatFeeds {
  readonly #o: ThreatFeedsOptions;
  readonly #feeds = new Map<string, Feed>();
  #generation = 0;
  readonly #metrics: {
    readonly entries: Gauge<'feed'>;
    readonly bad: Gauge<'feed'>;
    readonly failures: Counter<'feed'>;
    readonly lastOk: Gauge<'feed'>;
  };

  constructor(o: ThreatFeedsOptions) {
    this.#o = o;
    const registers = [o.registry];
    const feeds = this.#feeds;
    this.#metrics = {
      entries: new Gauge({ name: 'airlock_threat_feed_entries', help: 'Entries (domains, addresses, ranges) of the copy of each threat feed in force.', labelNames: ['feed'] as const, registers }),
      bad: new Gauge({ name: 'airlock_threat_feed_bad_entries', help: 'Lines or indicators of the copy of each threat feed in force that are no entry (skipped).', labelNames: ['feed'] as const, registers }),
      failures: new Counter({ name: 'airlock_threat_feed_load_failures_total', help: 'Threat feed loads that failed (the last good copy stays in force).', labelNames: ['feed'] as const, registers }),
      lastOk: new Gauge({ name: 'airlock_threat_feed_last_load_ok', help: '1 when the last load of the threat feed succeeded, 0 when it failed.', labelNames: ['feed'] as const, registers }),
    };
    new Gauge({
      name: 'airlock_threat_feed_age_seconds',
      help: 'Seconds since the copy of each threat feed in force was read (grows while loads fail; for a feed that never loaded, since this replica took it up).',
      labelNames: ['feed'] as const,
      registers,
      collect() {
        this.reset();
        const now = Date.now();
        // A feed that never loaded is stale from the start: it lists nothing (AirlockThreatFeedStale fires for it too).
        for (const f of feeds.values()) this.set({ feed: f.doc.name }, (now - (f.good?.loadedAt ?? f.since)) / 1000);
      },
    });
    // With the age, what a stale feed is measured in (the chart's AirlockThreatFeedStale: age over N refreshes).
    new Gauge({
      name: 'airlock_threat_feed_refresh_seconds',
      help: 'How often each threat feed is reloaded (its refreshSeconds).',
      labelNames: ['feed'] as const,
      registers,
      collect() {
        this.reset();
        for (const f of feeds.values()) this.set({ feed: f.doc.name }, f.doc.refreshSeconds);
      },
    });
  }

  /** The documents of the policy version in force: new or changed feeds are loaded now, removed ones dropped. */
  configure(docs: readonly ThreatFeedDoc[]): void {
    const wanted = new Map(docs.map((d) => [d.name, d]));
    for (const [name, feed] of this.#feeds) {
      const doc = wanted.get(name);
      if (doc !== undefined && sameFeed(doc, feed.doc)) continue;
      this.#stop(feed);
      this.#feeds.delete(name);
      for (const m of [this.#metrics.entries, this.#metrics.bad, this.#metrics.failures, this.#metrics.lastOk]) m.remove({ feed: name });
    }
    for (const doc of docs) {
      if (this.#feeds.has(doc.name)) continue;
      const feed: Feed = { doc, since: Date.now(), closed: false };
      this.#feeds.set(doc.name, feed);
      void this.#load(feed);
    }
    void this.#publish();
  }

  status(): ThreatFeedStatus[] {
    const now = Date.now();
    return [...this.#feeds.values()].map(({ doc, good, lastError, lastAttemptAt }) => ({
      name: doc.name,
      source: 'file' in doc.source ? doc.source.file : doc.source.url,
      format: doc.format,
      refreshSeconds: doc.refreshSeconds,
      ...(good === undefined ? {} : { version: good.version, loadedAt: new Date(good.loadedAt).toISOString(), ageSeconds: Math.round((now - good.loadedAt) / 1000) }),
      entries: good?.entries.length ?? 0,
      badEntries: good?.badLines ?? 0,
      badSamples: good?.badSamples ?? [],
      ...(lastError === undefined ? {} : { lastError }),
      ...(lastAttemptAt === undefined ? {} : { lastAttemptAt: new Date(lastAttemptAt).toISOString() }),
    }));
  }

  close(): void {
    for (const feed of this.#feeds.values()) this.#stop(feed);
    this.#feeds.clear();
  }

  #stop(feed: Feed): void {
    feed.closed = true;
    clearTimeout(feed.timer);
  }

  async #load(feed: Feed): Promise<void> {
    const { doc } = feed;
    const log = this.#o.logger;
    try {
      const bytes = await readSource(doc.source);
      if (feed.closed) return;
      const version = `sha256:${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}`;
      if (feed.good?.version === version) {
        feed.good.loadedAt = Date.now();
      } else {
        const parsed = await parseFeedInSlices(bytes.toString('utf8'), doc.format);
        if (isClosed(feed)) return;
        feed.good = { ...parsed, version, loadedAt: Date.now() };
        log.info({ feed: doc.name, version, entries: parsed.entries.length, badEntries: parsed.badLines }, 'threat feed loaded');
        if (parsed.badLines > 0) log.warn({ feed: doc.name, version, badEntries: parsed.badLines, samples: parsed.badSamples }, 'threat feed has entries that are none (skipped)');
        this.#metrics.entries.set({ feed: doc.name }, parsed.entries.length);
        this.#metrics.bad.set({ feed: doc.name }, parsed.badLines);
        await this.#publish();
      }
      feed.lastError = undefined;
      this.#metrics.lastOk.set({ feed: doc.name }, 1);
    } catch (err) {
      if (feed.closed) return;
      feed.lastError = errorMessage(err);
      this.#metrics.failures.inc({ feed: doc.name });
      this.#metrics.lastOk.set({ feed: doc.name }, 0);
      log.warn({ feed: doc.name, err: feed.lastError, keeps: feed.good?.version ?? 'nothing (never loaded)' }, 'threat feed load failed: the last good copy stays in force');
    } finally {
      feed.lastAttemptAt = Date.now();
      if (!feed.closed) {
        feed.timer = setTimeout(() => void this.#load(feed), doc.refreshSeconds * 1000);
        feed.timer.unref();
      }
    }
  }

  /** Every feed's good copy, in document order, as the index decisions read; a later publish wins over one still building. */
  async #publish(): Promise<void> {
    const generation = ++this.#generation;
    const loaded = [...this.#feeds.values()].flatMap(({ doc, good }) => (good === undefined ? [] : [{ name: doc.name, version: good.version, entries: good.entries }]));
    const threats = loaded.length === 0 ? ThreatIndex.EMPTY : await ThreatIndex.build(loaded);
    if (generation === this.#generation) this.#o.decisions.replace({ threats });
  }
}

/** Read through a call: a feed may be closed while its load awaits. */
const isClosed = (feed: Feed): boolean => feed.closed;

/** Two documents that read the same source the same way (`at` aside): the loaded copy is kept. */
function sameFeed(a: ThreatFeedDoc, b: ThreatFeedDoc): boolean {
  return isDeepStrictEqual({ ...a, at: '' }, { ...b, at: '' });
}

async function readSource(source: ThreatFeedDoc['source']): Promise<Buffer> {
  if ('file' in source) {
    // Sized before it is read: a device (/dev/zero) or a huge file would be read whole otherwise.
    const info = await stat(source.file);
    if (!info.isFile()) throw new Error(`${source.file} is not a regular file`);
    if (info.size > MAX_FEED_BYTES) throw new Error(`${source.file} is over ${MAX_FEED_BYTES} bytes`);
    const bytes = await readFile(source.file);
    if (bytes.length > MAX_FEED_BYTES) throw new Error(`${source.file} is over ${MAX_FEED_BYTES} bytes`);
    return bytes;
  }
  const ca = source.caFile === undefined ? undefined : await readFile(source.caFile);
  return fetchHttps(source.url, ca);
}

/** GET `url` over verified TLS (against `ca` when given, else Node's roots): the 200 body, bounded; no redirects. */
function fetchHttps(url: string, ca: Buffer | undefined): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', ...(ca === undefined ? {} : { ca }), timeout: FETCH_TIMEOUT_MS, headers: { accept: 'text/plain, application/json' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`${url} answered ${res.statusCode ?? '?'}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_FEED_BYTES) {
          req.destroy(new Error(`${url} sent over ${MAX_FEED_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer within ${FETCH_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}
