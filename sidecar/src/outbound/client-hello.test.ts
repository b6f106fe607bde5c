import { describe, expect, it } from 'vitest';
import { realClientHello } from '../testing/client-hello.ts';
import { readClientHello } from './client-hello.ts';

const record = (body: Buffer): Buffer => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, body.length >> 8, body.length & 255]), body]);
const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 255]);
const vec16 = (b: Buffer): Buffer => Buffer.concat([u16(b.length), b]);
const sniExtension = (...names: { type?: number; name: string }[]): Buffer =>
  Buffer.concat([u16(0), vec16(vec16(Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([n.type ?? 0]), vec16(Buffer.from(n.name, 'latin1'))])))))]);

/** A minimal ClientHello with the given extensions, as one record. */
function helloWith(extensions: Buffer | undefined): Buffer {
  const body = Buffer.concat([
    Buffer.from([3, 3]),
    Buffer.alloc(32),
    Buffer.from([0]), // session id
    vec16(Buffer.from([0x13, 0x01])),
    Buffer.from([1, 0]), // compression: null
    ...(extensions === undefined ? [] : [vec16(extensions)]),
  ]);
  const handshake = Buffer.concat([Buffer.from([1, body.length >> 16, (body.length >> 8) & 255, body.length & 255]), body]);
  return record(handshake);
}

describe('reading the SNI of a ClientHello', () => {
  it("reads node:tls's own ClientHello, and wants more until it is whole", async () => {
    const hello = await realClientHello('API.Example.com');
    expect(readClientHello(hello)).toEqual({ state: 'done', serverName: 'api.example.com' });
    for (const cut of [1, 5, 20, hello.length - 1]) expect(readClientHello(hello.subarray(0, cut)), `cut at ${cut}`).toMatchObject({ state: 'more' });
  });

  it('reads a ClientHello without SNI (node:tls sends none to an IP address) as no server name', async () => {
    expect(readClientHello(await realClientHello(undefined))).toEqual({ state: 'done', serverName: undefined });
    expect(readClientHello(helloWith(undefined))).toEqual({ state: 'done', serverName: undefined });
  });

  it('reads a ClientHello split across two records', async () => {
    const hello = await realClientHello('split.example.com');
    const handshake = hello.subarray(5);
    const split = Buffer.concat([record(handshake.subarray(0, 10)), record(handshake.subarray(10))]);
    expect(readClientHello(split.subarray(0, 20))).toMatchObject({ state: 'more' });
    expect(readClientHello(split)).toEqual({ state: 'done', serverName: 'split.example.com' });
  });

  it('refuses what a TLS server could read differently: two server_name extensions, two host names, a name that is no DNS name', () => {
    const two = helloWith(Buffer.concat([sniExtension({ name: 'allowed.example.com' }), sniExtension({ name: 'evil.example.com' })]));
    expect(readClientHello(two)).toMatchObject({ state: 'invalid', reason: 'two server_name extensions' });
    const twoNames = helloWith(sniExtension({ name: 'allowed.example.com' }, { name: 'evil.example.com' }));
    expect(readClientHello(twoNames)).toMatchObject({ state: 'invalid', reason: 'two host names in server_name' });
    for (const name of ['evil.com\0.allowed.com', 'a b', 'allowed.com.', 'évil.com', 'a/b', 'a@b', 'a:443', '']) {
      expect(readClientHello(helloWith(sniExtension({ name }))), JSON.stringify(name)).toMatchObject({ state: 'invalid' });
    }
    // Another name type is no host name: skipped.
    expect(readClientHello(helloWith(sniExtension({ type: 7, name: 'x' })))).toEqual({ state: 'done', serverName: undefined });
  });

  it('refuses lengths that run past their end, records that are not handshakes, and an oversized hello', () => {
    const good = helloWith(sniExtension({ name: 'a.example.com' }));
    // The SNI list claims more than its extension holds.
    const lying = Buffer.from(good);
    const at = lying.indexOf(Buffer.from('a.example.com')) - 2;
    lying.writeUInt16BE(200, at);
    expect(readClientHello(lying)).toMatchObject({ state: 'invalid' });
    expect(readClientHello(Buffer.from('\x16\x03\x01\x00\x00'))).toMatchObject({ state: 'invalid' });
    expect(readClientHello(Buffer.concat([good.subarray(0, 5), Buffer.from([2]), good.subarray(6)]))).toMatchObject({ state: 'invalid', reason: 'the first handshake message is not a ClientHello' });
    expect(readClientHello(Buffer.from([0x16, 3, 1, 0x40, 0x01]))).toMatchObject({ state: 'invalid' });
    const huge = Buffer.from([0x16, 3, 1, 0x00, 0x04, 1, 0xff, 0xff, 0xff]);
    expect(readClientHello(huge)).toMatchObject({ state: 'invalid', reason: 'the ClientHello is too large' });
    // A stream of tiny records that never completes a hello is given up after 16 records.
    const tiny = record(Buffer.from([1, 0, 0xff, 0]));
    const stream = Buffer.concat([tiny, ...Array.from({ length: 40 }, () => record(Buffer.from([0])))]);
    expect(readClientHello(stream)).toMatchObject({ state: 'invalid' });
  });
});
