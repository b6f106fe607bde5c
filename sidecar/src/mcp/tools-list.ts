import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { isObject } from './read-request.ts';

/** Which of these tool names the caller may call (asked fresh of the control plane). */
export type ToolFilter = (names: readonly string[]) => Promise<ReadonlySet<string>>;

function cannotFilter(why: string): AirlockError {
  return new AirlockError(ErrorCode.UpstreamUnavailable, `the tools/list answer cannot be filtered: ${why}`);
}

/** The tools array of a JSON-RPC result to tools/list, or undefined for any other message. */
function toolsOf(message: unknown): unknown[] | undefined {
  if (!isObject(message) || !isObject(message.result)) return undefined;
  const tools = message.result.tools;
  return Array.isArray(tools) ? tools : undefined;
}

function nameOf(tool: unknown): string | undefined {
  return isObject(tool) && typeof tool.name === 'string' ? tool.name : undefined;
}

/** The message with only the tools `allowed` names (entries without a name are dropped too). */
function filtered(message: Record<string, unknown>, allowed: ReadonlySet<string>): Record<string, unknown> {
  const result = message.result as Record<string, unknown>;
  const tools = (result.tools as unknown[]).filter((t) => {
    const name = nameOf(t);
    return name !== undefined && allowed.has(name);
  });
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
    const allowed = await allow(tools.map(nameOf).filter((n) => n !== undefined));
    return Buffer.from(JSON.stringify(filtered(message as Record<string, unknown>, allowed)));
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
  const allowed = await allow([...new Set(events.flatMap((e) => e.tools?.map(nameOf).filter((n) => n !== undefined) ?? []))]);
  const out = events.map((e) => {
    if (e.tools === undefined) return e.fields.join('\n');
    const rest = e.fields.filter((l) => !l.startsWith('data:'));
    return [...rest, `data: ${JSON.stringify(filtered(e.message as Record<string, unknown>, allowed))}`].join('\n');
  });
  return Buffer.from(out.join('\n\n'));
}
