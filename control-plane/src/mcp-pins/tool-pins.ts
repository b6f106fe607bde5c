import { TOOL_CHANGED_REASON, TOOL_FLAGGED_REASON } from '@airlock/common/reason-class';
import { Counter, type Registry } from 'prom-client';
import { AirlockError, ErrorCode, errorMessage } from '@airlock/common/errors';
import type { Logger } from '@airlock/common/logging';
import { MAX_PINNED_TOOL_NAME, MAX_PINNED_TOOLS } from '@airlock/common/mcp-tool-pins';
import type { McpListedTool } from '@airlock/proto/authorization/v1';
import type { DecisionState } from '../authz/decision-state.ts';
import type { QuarantineRecord, Store, ToolPinRecord } from '../store/store.ts';
import type { Destination } from '../policy/engine.ts';
import type { ToolChangeAction } from '../policy/types.ts';

/**
 * MCP tool pinning (README "Tool pinning"): per MCP server, the hash of each tool's definition,
 * pinned on first sight (trust on first use) or by an operator's accept. A tools/list answer that
 * lists a tool with another hash (a rug pull), or one a poisoning detector flags, follows the
 * policy's `onToolChange`: alert, deny (the tool unlisted and its calls denied until accepted) or
 * quarantine (deny, and the server's identity quarantined; an external host cannot be: deny).
 */

/** Pins by server, then tool: replaced (never mutated) on each change, read by decisions in the snapshot. */
export type ToolPinMap = ReadonlyMap<string, ReadonlyMap<string, ToolPinRecord>>;

/** Without a rule's `onToolChange`: a rug pull is an attack on the agent, so the changed tool is withheld (the others stay usable). */
export const DEFAULT_TOOL_CHANGE_ACTION: ToolChangeAction = 'deny';

/** At most this many pins in all (a server listing ever new tool names cannot grow the store without bound). */
export const MAX_TOOL_PINS = 100_000;
/** At most this many detector flags per tool, each at most this long. */
const MAX_FLAGS = 16;
const MAX_FLAG_LENGTH = 64;
const HASH = /^[0-9a-f]{64}$/;

/** What a tools/list did to one tool, for the audit line (never its description). */
export interface ToolPinFinding {
  readonly tool: string;
  /** `changed`: another hash than the pinned one; `flagged`: first seen, flagged by a detector; `ambiguous`: listed twice with two hashes; `unpinnable`: over MAX_TOOL_PINS. */
  readonly change: 'changed' | 'flagged' | 'ambiguous' | 'unpinnable';
  /** What was done: the rule's choice (quarantine of an external host is done as deny). */
  readonly action: ToolChangeAction;
  readonly pinned?: string;
  readonly seen?: string;
  /** The detectors that flagged it, `id@version`. */
  readonly detectors?: readonly string[];
  /** Set when quarantine was chosen and the server is an external host: why it was denied instead. */
  readonly note?: string;
}

/** The server a decision is about: a mesh destination's SPIFFE ID, or an external `host:port`. */
export function serverOf(destination: Destination, port: number): string {
  return destination.kind === 'agent' ? destination.id.uri : `${destination.host}:${port}`;
}

/** The sidecar's report, checked against the bounds it holds (common/src/mcp-tool-pins.ts): over them, refused. */
export function checkListedToolPins(tools: readonly McpListedTool[]): void {
  if (tools.length > MAX_PINNED_TOOLS) throw new AirlockError(ErrorCode.BadRequest, `more than ${MAX_PINNED_TOOLS} tools to pin`);
  for (const t of tools) {
    if (t.name === '' || t.name.length > MAX_PINNED_TOOL_NAME) throw new AirlockError(ErrorCode.BadRequest, `a listed tool's name is empty or longer than ${MAX_PINNED_TOOL_NAME} characters`);
    if (!HASH.test(t.hash)) throw new AirlockError(ErrorCode.BadRequest, 'a listed tool\'s hash is not a lowercase hex SHA-256');
    if (t.flags.length > MAX_FLAGS || t.flags.some((f) => f.length > MAX_FLAG_LENGTH)) throw new AirlockError(ErrorCode.BadRequest, `a listed tool has more than ${MAX_FLAGS} detector flags or one longer than ${MAX_FLAG_LENGTH}`);
  }
}

/** Whether calls to a pinned tool are denied: a pending version the rule chose not to let through (alert does). */
export function isBlocked(pin: ToolPinRecord): boolean {
  return pin.pending !== undefined && pin.pending.action !== 'alert';
}

/**
 * The denial reason of a call to `tool` on `server`, or undefined when its pin lets it through
 * (or it has none: a tool never listed is not pinned). Read from the decision snapshot.
 */
export function pinDenial(pins: ToolPinMap | undefined, server: string, tool: string): string | undefined {
  const pin = pins?.get(server)?.get(tool);
  if (pin === undefined || !isBlocked(pin) || pin.pending === undefined) return undefined;
  const flagged = pin.pending.flags.length === 0 ? '' : ` (flagged by ${pin.pending.flags.join(', ')})`;
  if (pin.hash === '') return `${TOOL_FLAGGED_REASON}: the MCP tool "${tool}" was flagged as poisoned at first sight${flagged}: calls are denied until an operator accepts it (airlock tools accept)`;
  return `${TOOL_CHANGED_REASON}: the MCP tool "${tool}" changed since it was pinned${flagged}: calls are denied until an operator accepts the new version (airlock tools accept)`;
}

export interface ToolPinsDeps {
  readonly store: Store;
  readonly decisions: DecisionState;
  readonly registry: Registry;
  readonly logger: Logger;
  /** Quarantines a server identity (onToolChange: quarantine). */
  readonly quarantine: (record: QuarantineRecord) => Promise<void>;
}

export interface Observed {
  /** Tools withheld from the answer (and whose calls are denied). */
  readonly withheld: ReadonlySet<string>;
  /** What changed, for the audit line; empty when nothing did. */
  readonly findings: readonly ToolPinFinding[];
}

/**
 * The pins of this replica: read from the store at start, changed here (held in memory at once,
 * then written; a decision never waits for the store) and followed from other replicas.
 */
export class ToolPins {
  readonly #d: ToolPinsDeps;
  readonly #events: Counter<'event' | 'action'>;
  #count = 0;

  private constructor(deps: ToolPinsDeps) {
    this.#d = deps;
    this.#events = new Counter({
      name: 'airlock_mcp_tool_pin_events_total',
      help: 'MCP tools that changed since pinned (rug pulls), were flagged by a poisoning detector, were listed twice with two definitions or could not be pinned, by what the policy chose (alert, deny, quarantine).',
      labelNames: ['event', 'action'],
      registers: [deps.registry],
    });
  }

  static async load(deps: ToolPinsDeps): Promise<ToolPins> {
    const pins = new ToolPins(deps);
    await pins.reload();
    return pins;
  }

  async reload(): Promise<void> {
    const next = new Map<string, Map<string, ToolPinRecord>>();
    const all = await this.#d.store.listToolPins();
    for (const p of all) {
      let byTool = next.get(p.server);
      if (byTool === undefined) next.set(p.server, (byTool = new Map<string, ToolPinRecord>()));
      byTool.set(p.tool, p);
    }
    this.#count = all.length;
    this.#d.decisions.replace({ toolPins: next });
  }

  /** A pin another replica stored. */
  follow(pin: ToolPinRecord): void {
    this.#set(pin);
  }

  #pins(): ToolPinMap {
    return this.#d.decisions.current().toolPins ?? new Map();
  }

  #set(pin: ToolPinRecord): void {
    const pins = this.#pins();
    const byTool = new Map(pins.get(pin.server));
    if (!byTool.has(pin.tool)) this.#count++;
    byTool.set(pin.tool, pin);
    this.#d.decisions.replace({ toolPins: new Map(pins).set(pin.server, byTool) });
  }

  /** Held at once, stored behind: a store failure is logged (on restart the change is seen again: it was not accepted). */
  #save(pin: ToolPinRecord): void {
    this.#set(pin);
    this.#d.store.putToolPin(pin).catch((err: unknown) => this.#d.logger.error({ server: pin.server, tool: pin.tool, error: errorMessage(err) }, 'cannot store an MCP tool pin'));
  }

  list(server?: string): ToolPinRecord[] {
    const out: ToolPinRecord[] = [];
    for (const [s, byTool] of this.#pins()) if (server === undefined || s === server) out.push(...byTool.values());
    return out.sort((a, b) => (a.server === b.server ? (a.tool < b.tool ? -1 : 1) : a.server < b.server ? -1 : 1));
  }

  /**
   * The tools of one tools/list answer from `server` (a mesh identity when `identity` is set),
   * listed under a rule choosing `action`: pins new ones, records changed or flagged ones, and
   * says which to withhold.
   */
  observe(server: string, identity: string | undefined, tools: readonly McpListedTool[], action: ToolChangeAction, now = Date.now()): Observed {
    const byName = new Map<string, McpListedTool[]>();
    for (const t of tools) {
      const same = byName.get(t.name);
      if (same === undefined) byName.set(t.name, [t]);
      else same.push(t);
    }
    const pins = this.#pins().get(server);
    const withheld = new Set<string>();
    const findings: ToolPinFinding[] = [];
    // An external host cannot be quarantined (it has no identity here): its changed tool is denied instead.
    const effective: ToolChangeAction = action === 'quarantine' && identity === undefined ? 'deny' : action;
    const note = effective === action ? {} : { note: 'an external host cannot be quarantined: denied instead' };
    let quarantineFor: string | undefined;
    for (const [name, listed] of byName) {
      const hashes = new Set(listed.map((t) => t.hash));
      const pin = pins?.get(name);
      if (hashes.size > 1) {
        // Two definitions under one name: which one the agent's client keeps is not ours to guess.
        withheld.add(name);
        findings.push({ tool: name, change: 'ambiguous', action: 'deny' });
        this.#events.inc({ event: 'ambiguous', action: 'deny' });
        continue;
      }
      const seen = listed[0] as McpListedTool;
      const flags = [...new Set(listed.flatMap((t) => t.flags))];
      if (pin === undefined) {
        if (this.#count >= MAX_TOOL_PINS) {
          withheld.add(name);
          findings.push({ tool: name, change: 'unpinnable', action: 'deny' });
          this.#events.inc({ event: 'unpinnable', action: 'deny' });
          continue;
        }
        if (flags.length === 0) {
          this.#save({ server, tool: name, hash: seen.hash, pinnedAt: now, pinnedBy: 'first-use' });
          continue;
        }
        this.#save({ server, tool: name, hash: '', pinnedAt: now, pinnedBy: '', pending: { hash: seen.hash, seenAt: now, flags, action: effective } });
        findings.push({ tool: name, change: 'flagged', action: effective, seen: seen.hash, detectors: flags, ...note });
        this.#events.inc({ event: 'flagged', action: effective });
        if (effective !== 'alert') withheld.add(name);
        if (effective === 'quarantine') quarantineFor = name;
        continue;
      }
      if (pin.hash === seen.hash) {
        // Back to the accepted version: what was pending no longer is.
        if (pin.pending !== undefined) this.#save({ server, tool: name, hash: pin.hash, pinnedAt: pin.pinnedAt, pinnedBy: pin.pinnedBy });
        continue;
      }
      const known = pin.pending?.hash === seen.hash;
      // The same pending version under a rule that now chooses otherwise follows the rule.
      if (!known || pin.pending.action !== effective) {
        this.#save({ ...pin, pending: { hash: seen.hash, seenAt: known ? pin.pending.seenAt : now, flags, action: effective } });
      }
      if (!known) {
        const change = pin.hash === '' ? 'flagged' : 'changed';
        findings.push({ tool: name, change, action: effective, ...(pin.hash === '' ? {} : { pinned: pin.hash }), seen: seen.hash, ...(flags.length === 0 ? {} : { detectors: flags }), ...note });
        this.#events.inc({ event: change, action: effective });
        if (effective === 'quarantine') quarantineFor = name;
      }
      if (effective !== 'alert') withheld.add(name);
    }
    if (quarantineFor !== undefined && identity !== undefined) this.#quarantine(identity, quarantineFor, now);
    return { withheld, findings };
  }

  #quarantine(identity: string, tool: string, now: number): void {
    if (this.#d.decisions.current().quarantined.has(identity)) return;
    const record = { spiffeId: identity, reason: `MCP tool "${tool.slice(0, 100)}" changed or was flagged as poisoned (onToolChange: quarantine)`, actor: 'tool-pinning', since: now };
    this.#d.quarantine(record).catch((err: unknown) => this.#d.logger.error({ identity, error: errorMessage(err) }, 'cannot quarantine the MCP server whose tool changed'));
  }

  /**
   * An operator accepts a version of `tool` on `server`: the pending one, or `hash` (which must be
   * the pending one, or, for a tool with nothing pending or never seen, pins that hash ahead).
   * Returns the pin before and after. NotFound / Conflict when there is nothing to accept.
   */
  async accept(server: string, tool: string, hash: string | undefined, actor: string, now = Date.now()): Promise<{ before: ToolPinRecord | undefined; after: ToolPinRecord }> {
    if (hash !== undefined && !HASH.test(hash)) throw new AirlockError(ErrorCode.BadRequest, '"hash" must be a lowercase hex SHA-256 (64 characters, as `airlock tools list` shows)');
    const before = this.#pins().get(server)?.get(tool);
    let accepted: string;
    if (before?.pending !== undefined) {
      if (hash !== undefined && hash !== before.pending.hash) {
        throw new AirlockError(ErrorCode.Conflict, `the version of "${tool}" awaiting acceptance on ${server} has hash ${before.pending.hash}, not ${hash}: it changed again since you looked (see airlock tools list)`);
      }
      accepted = before.pending.hash;
    } else if (hash !== undefined) {
      accepted = hash;
    } else if (before === undefined) {
      throw new AirlockError(ErrorCode.NotFound, `no tool "${tool}" has been listed by MCP server ${server} (airlock tools list shows the servers and tools seen; --hash pins a version ahead)`);
    } else {
      throw new AirlockError(ErrorCode.Conflict, `nothing to accept: "${tool}" on ${server} is pinned at ${before.hash} and no other version was seen`);
    }
    if (before === undefined && this.#count >= MAX_TOOL_PINS) throw new AirlockError(ErrorCode.TooLarge, `there are ${MAX_TOOL_PINS} tool pins already`);
    const after: ToolPinRecord = { server, tool, hash: accepted, pinnedAt: now, pinnedBy: actor };
    await this.#d.store.putToolPin(after);
    this.#set(after);
    return { before, after };
  }
}
