import { setImmediate } from 'node:timers/promises';
import { domainToASCII } from 'node:url';
import { canonicalAddress, parseCidr, type AddressFamily } from '@airlock/common/addresses';
import type { ThreatFeedFormat } from './document.ts';

/** Lines read (or entries indexed) between two yields to the event loop. */
export const SLICE = 2_000;

/** One listed destination: a domain (and its subdomains), or an address range (a single address is a /32 or /128). */
export type ThreatEntry =
  | { readonly kind: 'domain'; readonly domain: string; readonly text: string }
  | { readonly kind: 'cidr'; readonly address: string; readonly family: AddressFamily; readonly prefix: number; readonly text: string };

/** A feed's text read: its entries, and the lines (or indicators) that are none, counted and a few quoted. */
export interface ParsedFeed {
  readonly entries: readonly ThreatEntry[];
  readonly badLines: number;
  /** The first few bad lines, `line N: why` (never their text), for the status output. */
  readonly badSamples: readonly string[];
}

const MAX_BAD_SAMPLES = 5;
// Why an entry is bad, never what it says: the status (role viewer) must not quote a file that an
// editor pointed a feed at (the control plane's own secrets are files it can read).
const NOT_AN_ENTRY = 'not a domain, IP address or CIDR';
const NOT_A_CIDR = 'not a CIDR (address/prefix length)';
const STIX_ID = /^indicator--[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;
const PLAIN_NAME = /^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$/;
/** A host WHATWG URL reads as IPv4: its last label is a number (`1`, `0x7f`, `017`). */
export const ENDS_IN_A_NUMBER = /(^|\.)(\d+|0x[0-9a-f]*)\.?$/i;

/** `text` as an entry (a domain, an IP in any spelling, or a CIDR), or why it is none. */
export function readEntry(text: string): ThreatEntry | string {
  if (text.includes('/')) {
    try {
      const { address, family, prefix } = parseCidr(text);
      return { kind: 'cidr', address, family, prefix, text };
    } catch {
      return NOT_A_CIDR;
    }
  }
  // Most lines are plain names: read without WHATWG's host parser (URL, IDNA), which is the cost of a large feed.
  if (PLAIN_NAME.test(text) && !ENDS_IN_A_NUMBER.test(text)) {
    const domain = text.replace(/^\*\./, '').replace(/\.$/, '');
    if (domain.length <= 253 && domain.split('.').every((l) => LABEL.test(l))) return { kind: 'domain', domain, text };
  }
  const ip = canonicalAddress(text);
  if (ip !== undefined) return { kind: 'cidr', address: ip.address, family: ip.family, prefix: ip.family === 'ipv4' ? 32 : 128, text };
  // `*.example.com` and `example.com.` list example.com (its subdomains are listed with it).
  const bare = text.replace(/^\*\./, '').replace(/\.$/, '');
  const domain = domainToASCII(bare);
  if (domain === '' || domain.length > 253 || !domain.split('.').every((l) => LABEL.test(l))) return NOT_AN_ENTRY;
  // A name that reads as an address (`0x7f.1`) is caught above; one label of digits only is not a host name.
  if (/^[0-9.]+$/.test(domain)) return NOT_AN_ENTRY;
  return { kind: 'domain', domain, text };
}

/** Reads a feed's text in `format`; a bad line or indicator is counted, never fatal. Throws only when the whole text cannot be read (not a STIX bundle). */
export function parseFeed(text: string, format: ThreatFeedFormat): ParsedFeed {
  if (format === 'stix') return parseStix(text);
  const c = new Collector();
  for (const slices = readList(text, c); slices.next().done !== true; );
  return c.done();
}

/** As parseFeed, yielding to the event loop every SLICE lines of a list: a large feed does not stall decisions. */
export async function parseFeedInSlices(text: string, format: ThreatFeedFormat): Promise<ParsedFeed> {
  if (format === 'stix') return parseStix(text);
  const c = new Collector();
  for (const slices = readList(text, c); slices.next().done !== true; ) await setImmediate();
  return c.done();
}

class Collector {
  readonly entries: ThreatEntry[] = [];
  badLines = 0;
  readonly badSamples: string[] = [];

  add(where: string, text: string): void {
    const entry = readEntry(text);
    if (typeof entry === 'string') this.bad(where, entry);
    else this.entries.push(entry);
  }

  bad(where: string, why: string): void {
    this.badLines++;
    if (this.badSamples.length < MAX_BAD_SAMPLES) this.badSamples.push(`${where}: ${why}`);
  }

  done(): ParsedFeed {
    return { entries: this.entries, badLines: this.badLines, badSamples: this.badSamples };
  }
}

/** One entry per line; `#` starts a comment (whole line or after the entry); blank lines are skipped. */
function* readList(text: string, c: Collector): Generator<void> {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (i % SLICE === SLICE - 1) yield;
    const line = (lines[i] ?? '').replace(/#.*$/, '').trim().toLowerCase();
    if (line === '') continue;
    if (/\s/.test(line)) c.bad(`line ${i + 1}`, 'more than one entry on the line');
    else c.add(`line ${i + 1}`, line);
  }
}

/**
 * A STIX 2.1 bundle: each `indicator` object whose `pattern` (pattern_type stix, or unset) compares
 * `domain-name:value`, `ipv4-addr:value` or `ipv6-addr:value` with `=` lists that value; OR'ed
 * comparisons list each. Any other indicator (file hashes, URLs, AND, other operators) is counted
 * bad: the feed lists what it can, and says what it could not read.
 */
function parseStix(text: string, now = Date.now()): ParsedFeed {
  let bundle: unknown;
  try {
    bundle = JSON.parse(text);
  } catch (err) {
    // Not V8's message: it quotes the text (a feed file may hold anything the control plane can read).
    throw new Error('not JSON', { cause: err });
  }
  if (!isRecord(bundle) || bundle.type !== 'bundle' || !Array.isArray(bundle.objects)) throw new Error('not a STIX bundle (an object with type "bundle" and "objects")');
  const c = new Collector();
  bundle.objects.forEach((o: unknown, i) => {
    if (!isRecord(o) || o.type !== 'indicator') return;
    const where = `objects[${i}]${typeof o.id === 'string' && STIX_ID.test(o.id) ? ` (${o.id})` : ''}`;
    // Revoked or expired (valid_until passed): no longer an indicator.
    if (o.revoked === true) return;
    if (typeof o.valid_until === 'string' && Date.parse(o.valid_until) <= now) return;
    if (o.pattern_type !== undefined && o.pattern_type !== 'stix') return c.bad(where, 'pattern_type is not stix');
    if (typeof o.pattern !== 'string') return c.bad(where, 'no pattern');
    const values = patternValues(o.pattern);
    if (typeof values === 'string') return c.bad(where, values);
    for (const v of values) c.add(where, v.toLowerCase());
  });
  return c.done();
}

const COMPARISON = /^\s*(domain-name|ipv4-addr|ipv6-addr):value\s*=\s*'((?:[^'\\]|\\.)*)'\s*$/;

/** The values of `[x:value = 'v' OR x:value = 'w']` (or `[…] OR […]`), or why the pattern is not one this reads. */
function patternValues(pattern: string): string[] | string {
  const m = /^\s*\[(.*)\]\s*$/s.exec(pattern);
  if (m === null) return 'the pattern is not an observation [ … ]';
  const out: string[] = [];
  for (const part of (m[1] ?? '').split(/\s*\]\s+OR\s+\[\s*|\s+OR\s+/)) {
    const c = COMPARISON.exec(part);
    if (c === null) return "the pattern is not domain-name/ipv4-addr/ipv6-addr:value = '…' (OR'ed)";
    out.push((c[2] ?? '').replace(/\\(.)/g, '$1'));
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
