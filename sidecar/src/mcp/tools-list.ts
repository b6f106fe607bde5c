import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { listedTool, MAX_PINNED_TOOLS, type ListedTool } from '@airlock/common/mcp-tool-pins';
import { isObject } from './read-request.ts';

/**
 * Which of these listed tools the caller may call (asked fresh of the control plane, which also
 * pins each tool's hash: README "Tool pinning").
 */
export type ToolFilter = (tools: readonly ListedTool[]) => Promise<ReadonlySet<string>>;

/**
 * What is reported of each listed tool, by its entry in the answer: a tool that cannot be reported
 * (no name, too long a name, too deep a schema) is left out, and so dropped from the answer.
 */
class Reported {
  readonly #byEntry = new Map<unknown, ListedTool | undefined>();
  readonly tools: ListedTool[] = [];

  add(entries: readonly unknown[]): void {
    for (const entry of entries) {
      const tool = listedTool(entry);
      this.#byEntry.set(entry, tool);
      if (tool !== undefined) this.tools.push(tool);
    }
    if (this.tools.length > MAX_PINNED_TOOLS) throw cannotFilter(`it lists more than ${MAX_PINNED_TOOLS} tools`);
  }

  /** The entry's name, if it was reported and `allowed` has it. */
  keep(entry: unknown, allowed: ReadonlySet<string>): boolean {
    const tool = this.#byEntry.get(entry);
    return tool !== undefined && allowed.has(tool.name);
  }
}

function cannotFilter(why: string): AirlockError {
  return new AirlockError(ErrorCode.UpstreamUnavailable, `the tools/list answer cannot be filtered: ${why}`);
}

/** The tools array of a JSON-RPC result to tools/list, or undefined for any other message. */
function toolsOf(message: unknown): unknown[] | undefined {
  if (!isObject(message) || !isObject(message.result)) return undefined;
  const tools = message.result.tools;
  return Array.isArray(tools) ? tools : undefined;
}

/** The message with only the tools `allowed` names (entries not reported are dropped too). */
function filtered(message: Record<string, unknown>, allowed: ReadonlySet<string>, reported: Reported): Record<string, unknown> {
  const result = message.result as Record<string, unknown>;
  const tools = (result.tools as unknown[]).filter((t) => reported.keep(t, allowed));
  return { ...message, result: { ...result, tools } };
}

/**
 * Rewrites a tools/list answer (application/json, or text/event-stream as streamable HTTP may
 * answer) so it lists only the tools the caller may call. Other messages (errors, notifications)
 * pass unchanged; an answer that cannot be read is refused rather than passed unfiltered.
 */
export async function filterToolsListBody(contentType: string, body: Buffer, allow: ToolFilter): Promise<Buffer> {
  if (contentType === 'application/json') {
    let message: unknown;
    try {
      message = JSON.parse(body.toString('utf8'));
    } catch {
      throw cannotFilter('it is not valid JSON');
    }
    const tools = toolsOf(message);
    if (tools === undefined) return body;
    const reported = new Reported();
    reported.add(tools);
    const allowed = await allow(reported.tools);
    return Buffer.from(JSON.stringify(filtered(message as Record<string, unknown>, allowed, reported)));
  }
  if (contentType === 'text/event-stream') return filterEventStream(body, allow);
  throw cannotFilter(`content-type "${contentType.slice(0, 100)}" is neither application/json nor text/event-stream`);
}

interface SseEvent {
  readonly fields: string[];
  readonly message: unknown;
  /** The tools of a tools/list result in the event's data; undefined for any other event. */
  readonly tools: unknown[] | undefined;
}

async function filterEventStream(body: Buffer, allow: ToolFilter): Promise<Buffer> {
  // Lines end at CRLF, LF or CR, mixed as they come, and an empty line ends an event: as the
  // agent's SSE parser reads them (`data: a\n\rdata: b` is two events there).
  const blocks: string[][] = [[]];
  for (const line of body.toString('utf8').split(/\r\n|\n|\r/)) {
    if (line === '') blocks.push([]);
    else blocks[blocks.length - 1]?.push(line);
  }
  const events: SseEvent[] = blocks.map((fields) => {
    const data = fields.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
    let message: unknown;
    if (data.length > 0) {
      try {
        message = JSON.parse(data.join('\n'));
      } catch {
        message = undefined;
      }
    }
    return { fields, message, tools: toolsOf(message) };
  });
  if (!events.some((e) => e.tools !== undefined)) return body;
  const reported = new Reported();
  for (const e of events) if (e.tools !== undefined) reported.add(e.tools);
  const allowed = await allow(reported.tools);
  const out = events.map((e) => {
    if (e.tools === undefined) return e.fields.join('\n');
    const rest = e.fields.filter((l) => !l.startsWith('data:'));
    return [...rest, `data: ${JSON.stringify(filtered(e.message as Record<string, unknown>, allowed, reported))}`].join('\n');
  });
  return Buffer.from(out.join('\n\n'));
}
