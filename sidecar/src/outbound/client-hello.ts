/**
 * Reads the server name (SNI) of a TLS ClientHello without terminating TLS: what a captured TLS
 * connection is judged by (capture-server.ts). Hostile input: every length is checked against what
 * was received, and anything a TLS server could read differently from us is refused (two
 * server_name extensions, two host names, a name that is not a plain DNS name).
 */

/** The most bytes read before a ClientHello must be whole (a post-quantum key share makes it ~2 KB). */
export const MAX_CLIENT_HELLO_BYTES = 64 * 1024;

export type ClientHelloRead =
  /** Not whole yet: nothing more can be read before `need` bytes have been received. */
  | { readonly state: 'more'; readonly need: number }
  | { readonly state: 'done'; readonly serverName: string | undefined }
  | { readonly state: 'invalid'; readonly reason: string };

const HANDSHAKE_RECORD = 0x16;
const CLIENT_HELLO = 1;
const SERVER_NAME_EXTENSION = 0;
const HOST_NAME = 0;
/** RFC 8446 §5.1: a record carries at most 2^14 bytes. */
const MAX_RECORD = 16384;
/** Real ClientHellos come in one record; more than this many is someone making us parse for nothing. */
const MAX_RECORDS = 16;
/** RFC 6066 §3: an ASCII DNS host name, no trailing dot; letters, digits, hyphens. */
const DNS_NAME = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/i;

class Invalid extends Error {}

/** The bytes received so far on a connection whose first byte is 0x16: the ClientHello's server name once whole. */
export function readClientHello(received: Buffer): ClientHelloRead {
  try {
    // A handshake message may span records: gather their fragments.
    const fragments: Buffer[] = [];
    let at = 0;
    let need = 5;
    while (at + 5 <= received.length) {
      if (received[at] !== HANDSHAKE_RECORD) throw new Invalid('not a TLS handshake record');
      const length = received.readUInt16BE(at + 3);
      if (length === 0 || length > MAX_RECORD) throw new Invalid(`a TLS record of ${length} bytes`);
      if (fragments.length === MAX_RECORDS) throw new Invalid(`no whole ClientHello within ${MAX_RECORDS} records`);
      need = at + 5 + length;
      if (need > received.length) break;
      need += 5;
      fragments.push(received.subarray(at + 5, at + 5 + length));
      at += 5 + length;
      const handshake = Buffer.concat(fragments);
      if (handshake.length < 4) continue;
      if (handshake[0] !== CLIENT_HELLO) throw new Invalid('the first handshake message is not a ClientHello');
      const bodyLength = handshake.readUIntBE(1, 3);
      if (bodyLength + 4 > MAX_CLIENT_HELLO_BYTES) throw new Invalid('the ClientHello is too large');
      if (handshake.length >= bodyLength + 4) return { state: 'done', serverName: serverName(handshake.subarray(4, 4 + bodyLength)) };
    }
    if (need > MAX_CLIENT_HELLO_BYTES + 5 * MAX_RECORDS) throw new Invalid('no whole ClientHello within the first 64 KiB');
    return { state: 'more', need };
  } catch (err) {
    if (err instanceof Invalid) return { state: 'invalid', reason: err.message };
    throw err;
  }
}

/** A cursor that refuses to read past the end of what it was given. */
class Reader {
  private at = 0;
  private readonly buf: Buffer;
  constructor(buf: Buffer) {
    this.buf = buf;
  }
  atEnd(): boolean {
    return this.at === this.buf.length;
  }
  remaining(): number {
    return this.buf.length - this.at;
  }
  skip(n: number): void {
    this.bytes(n);
  }
  u8(): number {
    return this.bytes(1)[0] ?? 0;
  }
  u16(): number {
    return this.bytes(2).readUInt16BE(0);
  }
  bytes(n: number): Buffer {
    if (this.at + n > this.buf.length) throw new Invalid('a ClientHello length runs past its end');
    const out = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  /** A vector with a 1- or 2-byte length prefix, as its own reader. */
  vector(prefix: 1 | 2): Reader {
    return new Reader(this.bytes(prefix === 1 ? this.u8() : this.u16()));
  }
}

/** RFC 8446 §4.1.2 ClientHello body → the host_name of its server_name extension (RFC 6066 §3), if any. */
function serverName(body: Buffer): string | undefined {
  const r = new Reader(body);
  r.skip(2 + 32); // legacy_version, random
  r.vector(1); // legacy_session_id
  r.vector(2); // cipher_suites
  r.vector(1); // legacy_compression_methods
  if (r.atEnd()) return undefined; // no extensions at all
  const extensions = r.vector(2);
  if (!r.atEnd()) throw new Invalid('bytes after the ClientHello extensions');
  let name: string | undefined;
  let seen = false;
  while (!extensions.atEnd()) {
    const type = extensions.u16();
    const data = extensions.vector(2);
    if (type !== SERVER_NAME_EXTENSION) continue;
    if (seen) throw new Invalid('two server_name extensions');
    seen = true;
    const list = data.vector(2);
    if (!data.atEnd()) throw new Invalid('bytes after the server_name list');
    while (!list.atEnd()) {
      const nameType = list.u8();
      const value = list.vector(2);
      const text = value.bytes(value.remaining()).toString('latin1');
      if (nameType !== HOST_NAME) continue;
      if (name !== undefined) throw new Invalid('two host names in server_name');
      if (!DNS_NAME.test(text)) throw new Invalid('the server name is not a DNS host name');
      name = text.toLowerCase();
    }
  }
  return name;
}
