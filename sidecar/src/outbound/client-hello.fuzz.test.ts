import { connect, type AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:tls';
import { fuzz, fuzzAsync } from '@airlock/common/testing/fuzz';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { realClientHello } from '../testing/client-hello.ts';
import { readClientHello } from './client-hello.ts';

// The reference is OpenSSL: the server name a real TLS server (node:tls) reads from the same bytes.
// Whatever the bytes, the reader never throws; a ClientHello it reads whole names the server name
// OpenSSL reads, or it refuses.

const NAMES = ['api.example.com', 'a', 'x-y.z_1.example', 'API.Example.COM'];
const record = (body: Buffer): Buffer => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, body.length >> 8, body.length & 255]), body]);

type Edit = { op: 'flip' | 'set' | 'truncate' | 'insert' | 'drop'; at: number; byte: number; near: boolean };
const edit = fc.record({ op: fc.constantFrom('flip', 'set', 'truncate', 'insert', 'drop'), at: fc.nat(), byte: fc.constantFrom(0x00, 0x01, 0x02, 0x2e, 0x41, 0x7f, 0x80, 0xff, 0x16, 0x03), near: fc.boolean() }) as fc.Arbitrary<Edit>;
/** Applies an edit anywhere, or (`near`) within the server_name extension, where a reader is most likely to differ. */
function apply(bytes: Buffer, e: Edit, sni: number): Buffer {
  const at = e.near && sni >= 0 ? Math.min(bytes.length, sni - 12 + (e.at % 40)) : e.at % (bytes.length + 1);
  switch (e.op) {
    case 'flip':
    case 'set': {
      const b = Buffer.from(bytes);
      if (at < b.length) b[at] = e.op === 'set' ? e.byte : (b[at] ?? 0) ^ (e.byte || 1);
      return b;
    }
    case 'truncate':
      return bytes.subarray(0, at);
    case 'insert':
      return Buffer.concat([bytes.subarray(0, at), Buffer.from([e.byte]), bytes.subarray(at)]);
    case 'drop':
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1)]);
  }
}

describe('ClientHello reader (fuzz)', () => {
  const hellos: { hello: Buffer; name: string | undefined; sni: number }[] = [];
  let server: Server;
  const seen: { name?: string } = {};
  beforeAll(async () => {
    for (const name of [...NAMES, undefined]) {
      const hello = await realClientHello(name);
      hellos.push({ hello, name, sni: name === undefined ? -1 : hello.indexOf(name) });
    }
    // No certificate: the handshake fails after OpenSSL has read the server name, which is all that is asked of it.
    server = createServer({ SNICallback: (name, cb) => { seen.name = name; cb(new Error('enough')); } });
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** The server name OpenSSL reads from `bytes` (undefined: none, or it never got that far). */
  async function opensslName(bytes: Buffer): Promise<string | undefined> {
    delete seen.name;
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.resume();
    socket.end(bytes);
    await new Promise((resolve) => socket.once('close', resolve));
    return seen.name;
  }

  it('reads a real ClientHello cut anywhere as "more", however it is split into records, and whole as its name', () => {
    fuzz(fc.property(fc.nat(NAMES.length), fc.array(fc.nat(), { maxLength: 4 }), fc.nat(), (which, cuts, cut) => {
      const { hello, name } = hellos[which] ?? { hello: Buffer.alloc(0), name: undefined };
      const handshake = hello.subarray(5);
      const at = [...new Set([0, ...cuts.map((c) => 1 + (c % (handshake.length - 1))), handshake.length])].sort((a, b) => a - b);
      const split = Buffer.concat(at.slice(1).map((end, i) => record(handshake.subarray(at[i], end))));
      expect(readClientHello(split)).toEqual({ state: 'done', serverName: name?.toLowerCase() });
      const prefix = cut % split.length;
      const r = readClientHello(split.subarray(0, prefix));
      expect(r.state).toBe('more');
      if (r.state === 'more') expect(r.need).toBeGreaterThan(prefix);
    }), 1000);
  });

  it('never throws on mutated or arbitrary bytes, and reads a name only as a DNS name', () => {
    fuzz(fc.property(fc.nat(NAMES.length), fc.array(edit, { minLength: 1, maxLength: 3 }), fc.uint8Array({ maxLength: 64 }), fc.boolean(), (which, edits, junk, useJunk) => {
      const h = hellos[which];
      if (h === undefined) throw new Error('no hello');
      const bytes = useJunk ? Buffer.concat([Buffer.from([0x16]), Buffer.from(junk)]) : edits.reduce((b, e) => apply(b, e, h.sni), h.hello);
      const r = readClientHello(bytes);
      if (r.state === 'done' && r.serverName !== undefined) expect(r.serverName).toMatch(/^[a-z0-9_.-]{1,253}$/);
    }), 2000);
  });

  it('a ClientHello it reads whole names what OpenSSL reads from the same bytes', async () => {
    // The reference works: OpenSSL reads the real hellos' names.
    for (const h of hellos) expect(await opensslName(h.hello)).toBe(h.name);
    await fuzzAsync(fc.asyncProperty(fc.nat(NAMES.length), fc.array(edit, { minLength: 1, maxLength: 2 }), async (which, edits) => {
      const h = hellos[which];
      if (h === undefined) throw new Error('no hello');
      const bytes = edits.reduce((b, e) => apply(b, e, h.sni), h.hello);
      const r = readClientHello(bytes);
      if (r.state !== 'done') return;
      const openssl = await opensslName(bytes);
      // OpenSSL may refuse what this reader accepts (then nothing is served); it must not read another name.
      if (openssl !== undefined) expect(r.serverName).toBe(openssl.toLowerCase());
    }), 200);
  });
});
