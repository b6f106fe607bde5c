import type { ListedTool } from '@airlock/common/mcp-tool-pins';
import { AirlockError, ErrorCode } from '@airlock/common/errors';
import { fuzzAsync } from '@airlock/common/testing/fuzz';
import { createParser } from 'eventsource-parser';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { filterToolsListBody } from './tools-list.ts';

// A tools/list answer comes from the MCP server (possibly hostile) and goes to the agent. The
// reference for what the agent reads is what MCP clients use: JSON.parse, and eventsource-parser
// (the SSE parser of the MCP SDK's client). Whatever the bytes, the agent reads no tool the
// caller may not call, or the answer is refused.

const ALLOWED = new Set(['search', 'read']);
const allow = (tools: readonly ListedTool[]): Promise<ReadonlySet<string>> => Promise.resolve(new Set(tools.map((t) => t.name).filter((n) => ALLOWED.has(n))));

const tool = fc.oneof(fc.constantFrom('search', 'read', 'delete_all', 'exec').map((name) => ({ name })), fc.constant({}), fc.constant('x'));
const message = fc.oneof(
  fc.array(tool, { maxLength: 4 }).map((tools) => ({ jsonrpc: '2.0', id: 1, result: { tools } })),
  fc.constant({ jsonrpc: '2.0', method: 'notifications/progress' }),
  fc.constant({ jsonrpc: '2.0', id: 1, error: { code: -1, message: 'x' } }),
);
const EOL = ['\n', '\r\n', '\r'];
/** An SSE body: events of fields (data, event, id, comments), lines ended by any of CR, LF, CRLF, events by a blank line. */
const sse = fc.array(
  fc.tuple(
    fc.oneof(message.map((m) => JSON.stringify(m)), fc.constantFrom('{', '', 'x')),
    fc.array(fc.constantFrom('event: message', 'id: 1', ': comment', 'data', 'data:', 'retry: 1'), { maxLength: 2 }),
    fc.constantFrom(...EOL),
    fc.constantFrom(...EOL),
    fc.constantFrom('data: ', 'data:', 'data:  '),
  ),
  { minLength: 1, maxLength: 4 },
).map((events) => events.map(([data, extra, eol, blank, prefix]) => `${[...extra, `${prefix}${data}`].join(eol)}${eol}${blank}`).join(''));

/** The tool names in each JSON message an MCP client reads from `text`. */
function toolsRead(contentType: string, text: string): string[][] {
  const datas: string[] = [];
  if (contentType === 'application/json') datas.push(text);
  else {
    const parser = createParser({ onEvent: (e) => datas.push(e.data) });
    parser.feed(text);
    parser.feed('\n\n');
  }
  const out: string[][] = [];
  for (const d of datas) {
    let v: unknown;
    try {
      v = JSON.parse(d);
    } catch {
      continue;
    }
    const tools = (v as { result?: { tools?: unknown } } | null)?.result?.tools;
    if (Array.isArray(tools)) out.push(tools.map((t) => String((t as { name?: unknown } | null)?.name)));
  }
  return out;
}

describe('tools/list filter (fuzz)', () => {
  it('what the agent reads of a filtered answer lists only tools the caller may call, or the answer is refused', async () => {
    const body = fc.oneof(
      fc.tuple(fc.constant('application/json'), fc.oneof(message.map((m) => JSON.stringify(m)), fc.string({ maxLength: 20 }))),
      fc.tuple(fc.constant('text/event-stream'), fc.oneof(sse, fc.string({ maxLength: 40 }))),
    );
    await fuzzAsync(fc.asyncProperty(body, async ([type, text]) => {
      let out: Buffer;
      try {
        out = await filterToolsListBody(type, Buffer.from(text), allow);
      } catch (err) {
        if (err instanceof AirlockError && err.code === ErrorCode.UpstreamUnavailable) return;
        throw err;
      }
      for (const names of toolsRead(type, out.toString('utf8'))) for (const n of names) expect(ALLOWED).toContain(n);
    }), 1000);
  });

  it('filters events ended by mixed line breaks as the agent\'s SSE parser splits them', async () => {
    // Found by the property above: `\n\r` is a line end and then an empty line (an event's end) to
    // an SSE parser, but did not split events here, so the second event's tools/list passed unfiltered.
    const list = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'search' }, { name: 'delete_all' }] } });
    for (const text of [`data: {\n\rdata: ${list}\n\n`, `data: {}\r\n\ndata: ${list}\r\r`, `: c\r\rdata: ${list}\n`]) {
      const out = await filterToolsListBody('text/event-stream', Buffer.from(text), allow);
      expect(toolsRead('text/event-stream', out.toString('utf8')), JSON.stringify(text)).toEqual([['search']]);
    }
  });
});
