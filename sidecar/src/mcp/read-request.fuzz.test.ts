import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { fuzz, fuzzAsync } from '@airlock/common/testing/fuzz';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { duplicateKey } from './duplicate-key.ts';
import { parseMcpMessage, readMcpRequest } from './read-request.ts';

// The reference for duplicate keys is a small JSON parser of its own (below), which keeps every
// key of every object; the reference for the message is JSON.parse. Bodies are built with the
// tricks that fool a scanner: escaped keys (`"\u006dethod"` is "method"), braces, quotes and commas
// inside strings, nesting, whitespace.

type Json = null | boolean | number | string | Json[] | { pairs: [string, Json][] };

/** The first key (in text order of its second occurrence) repeated in one object, by a plain recursive parser. */
function referenceDuplicate(text: string): string | undefined {
  let i = 0;
  let found: string | undefined;
  const ws = (): void => {
    while (' \t\n\r'.includes(text.charAt(i)) && i < text.length) i++;
  };
  const string = (): string => {
    const start = i;
    i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const keys = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        const key = string();
        if (keys.has(key) && found === undefined) found = key;
        keys.add(key);
        ws();
        i++; // :
        value();
        ws();
        if (text[i++] === '}') return;
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i++] === ']') return;
      }
    } else if (c === '"') string();
    else while (i < text.length && !',]} \t\n\r'.includes(text.charAt(i))) i++;
  };
  value();
  return found;
}

const KEYS = ['jsonrpc', 'method', 'params', 'name', 'id', 'a', '', '"', '\\', '{', '}', ',', ':', 'é', '\u2028', '\ud83d\ude00'];
const key = fc.constantFrom(...KEYS);
const text = fc.oneof(fc.constantFrom('2.0', 'tools/call', 'tools/list', 'search', '{"a":1,"a":2}', '","', '\\', '"', '}', ']', ''), fc.string({ maxLength: 8 }));
const json: fc.Arbitrary<Json> = fc.letrec<{ value: Json }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(null, true, false, 0, -1.5e3, 2.0),
    text,
    fc.array(tie('value'), { maxLength: 3 }),
    fc.array(fc.tuple(key, tie('value')), { maxLength: 4 }).map((pairs) => ({ pairs })),
  ),
})).value;

/** JSON text of `v` with random whitespace and random `\uXXXX` escapes in strings. */
const serialize = (v: Json, rnd: () => number): string => {
  const sp = (): string => [' ', '', '\n', '\t', ''][Math.floor(rnd() * 5)] ?? '';
  const str = (s: string): string =>
    `"${[...JSON.stringify(s).slice(1, -1).matchAll(/\\u[0-9a-f]{4}|\\.|[^]/g)].map(([c]) => (c.length === 1 && rnd() < 0.3 ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c)).join('')}"`;
  if (v === null || typeof v === 'boolean' || typeof v === 'number') return JSON.stringify(v);
  if (typeof v === 'string') return str(v);
  if (Array.isArray(v)) return `[${sp()}${v.map((x) => serialize(x, rnd)).join(`${sp()},${sp()}`)}${sp()}]`;
  return `{${sp()}${v.pairs.map(([k, x]) => `${str(k)}${sp()}:${sp()}${serialize(x, rnd)}`).join(`${sp()},${sp()}`)}${sp()}}`;
};
const jsonText = fc.tuple(json, fc.integer()).map(([v, seed]) => {
  let s = seed;
  return serialize(v, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) < 0 ? -s : s) / 2 ** 31);
});
/** A JSON-RPC request (tools/call or another method), sometimes with a key repeated at some level. */
const request = fc.tuple(fc.constantFrom('tools/call', 'tools/list', 'initialize', 'x'), fc.constantFrom('search', 'delete_all', ''), fc.array(fc.tuple(key, json), { maxLength: 3 }), fc.integer()).map(([method, tool, extra, seed]) => {
  const params: Json = { pairs: [['name', tool], ...extra] };
  let s = seed;
  return serialize({ pairs: [['jsonrpc', '2.0'], ['id', 1], ['method', method], ['params', params], ...extra] }, () => ((s = (s * 1103515245 + 12345) % 2 ** 31) < 0 ? -s : s) / 2 ** 31);
});

describe('MCP body reader (fuzz)', () => {
  it('duplicateKey finds the key a plain JSON parser sees twice in one object, escaped or not', () => {
    fuzz(fc.property(fc.oneof(jsonText, request), (t) => {
      JSON.parse(t); // the precondition: only valid JSON is scanned
      expect(duplicateKey(t)).toBe(referenceDuplicate(t));
    }), 2000);
  });

  it('parseMcpMessage never throws, and reads a method and tool only from a JSON-RPC object without repeated keys', () => {
    const body = fc.oneof(request.map((t) => Buffer.from(t)), jsonText.map((t) => Buffer.from(t)), fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b)), request.chain((t) => fc.nat(t.length).map((n) => Buffer.from(t.slice(0, n)))));
    fuzz(fc.property(body, (b) => {
      const m = parseMcpMessage(b);
      if ('unreadable' in m) return;
      const v = JSON.parse(b.toString('utf8')) as Record<string, unknown>;
      expect(referenceDuplicate(b.toString('utf8'))).toBeUndefined();
      expect(v.jsonrpc).toBe('2.0');
      expect(m.method).toBe(v.method);
      const params = v.params as Record<string, unknown> | undefined;
      expect(m.tool).toBe(m.method === 'tools/call' ? params?.name : '');
      expect(m.tool === '' && m.method === 'tools/call').toBe(false);
    }), 2000);
  });

  it('readMcpRequest sends on exactly the bytes it got, however they arrive, and judges only what it read whole', async () => {
    const chunks = fc.oneof(request.map((t) => Buffer.from(t)), fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b))).chain((all) =>
      fc.array(fc.nat(all.length), { maxLength: 4 }).map((cuts) => {
        const at = [0, ...cuts.sort((a, b) => a - b), all.length];
        return at.slice(1).map((end, i) => all.subarray(at[i], end));
      }),
    );
    const headers = fc.record({
      'content-type': fc.constantFrom('application/json', 'Application/JSON; charset=utf-8', 'text/plain', '', 'application/json-seq'),
      // `exact` is the body's length; the others lie (a stream may end before or after).
      'content-length': fc.option(fc.constantFrom('0', '10', '99999', 'x', 'exact'), { nil: undefined }),
    });
    // The limit anywhere, or right at the body's length (the boundary).
    const withLimit = chunks.chain((parts) => {
      const length = parts.reduce((n, p) => n + p.length, 0);
      return fc.tuple(fc.constant(parts), fc.oneof(fc.integer({ min: 1, max: 200 }), fc.constantFrom(length - 1, length, length + 1).filter((n) => n >= 1)));
    });
    await fuzzAsync(fc.asyncProperty(withLimit, headers, fc.constantFrom('POST', 'GET', 'post'), async ([parts, max], h, method) => {
      const req = new IncomingMessage(new Socket());
      const all = Buffer.concat(parts);
      const declared = h['content-length'] === 'exact' ? String(all.length) : h['content-length'];
      req.method = method;
      req.headers = declared === undefined ? { 'content-type': h['content-type'] } : { 'content-type': h['content-type'], 'content-length': declared };
      for (const p of parts) req.push(p);
      req.push(null);
      const read = await readMcpRequest(req, max);
      const sent = read.body === undefined ? await drain(req) : Buffer.isBuffer(read.body) ? read.body : await drain(read.body);
      expect(sent.equals(all)).toBe(true);
      // What README says is read: a POST's application/json body, whole and within the limit.
      const json = (h['content-type'].split(';')[0] ?? '').trim().toLowerCase() === 'application/json';
      const tooLarge = Number(declared) > max || all.length > max;
      if (method !== 'POST') expect(read.message).toBeUndefined();
      else if (!json) expect(read.message).toEqual({ unreadable: expect.stringMatching(/^content-type is/) as unknown });
      else if (tooLarge) expect(read.message).toEqual({ unreadable: `the body is larger than ${max} bytes` });
      else expect(read.message).toEqual(parseMcpMessage(all));
    }), 500);
  });
});

async function drain(stream: Readable): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of stream) out.push(c as Buffer);
  return Buffer.concat(out);
}
