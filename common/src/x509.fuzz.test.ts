import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
// The CSRs a sidecar really sends (test-only import: common itself never depends on the sidecar).
import { newKeyAndCsr } from '../../sidecar/src/identity/key-and-csr.ts';
import { AirlockError, ErrorCode } from './errors.ts';
import { fuzz } from './testing/fuzz.ts';
import { publicKeyOfCsr } from './x509.ts';

// A CSR from an unauthenticated joiner is hostile input: any mutation of its DER (or its PEM) must
// be refused with AIRLOCK_BAD_REQUEST, never crash the CA. One that still verifies must still
// carry the key it was signed with (the signature covers it).

const der = (pem: string): Buffer => Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
const pem = (bytes: Buffer): string => `-----BEGIN CERTIFICATE REQUEST-----\n${(bytes.toString('base64').match(/.{1,64}/g) ?? []).join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;

/** The SPKI, or undefined when refused with a bad request; anything else thrown fails the property. */
function accepted(csrPem: string): Buffer | undefined {
  try {
    return publicKeyOfCsr(csrPem);
  } catch (err) {
    if (err instanceof AirlockError && err.code === ErrorCode.BadRequest) return undefined;
    throw err;
  }
}

/** Edits of DER bytes: flip, set, truncate, insert, duplicate a slice, drop a slice. */
type Edit = { op: 'flip' | 'set' | 'truncate' | 'insert' | 'dup' | 'drop'; at: number; len: number; byte: number };
const edit = fc.record({ op: fc.constantFrom('flip', 'set', 'truncate', 'insert', 'dup', 'drop'), at: fc.nat(), len: fc.integer({ min: 1, max: 8 }), byte: fc.constantFrom(0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xff, 0x30, 0x02, 0x03, 0x05, 0x06, 0x31, 0xa0) }) as fc.Arbitrary<Edit>;
function apply(bytes: Buffer, e: Edit): Buffer {
  const at = e.at % (bytes.length + 1);
  switch (e.op) {
    case 'flip': {
      const b = Buffer.from(bytes);
      if (at < b.length) b[at] = (b[at] ?? 0) ^ (e.byte || 1);
      return b;
    }
    case 'set': {
      const b = Buffer.from(bytes);
      if (at < b.length) b[at] = e.byte;
      return b;
    }
    case 'truncate':
      return bytes.subarray(0, at);
    case 'insert':
      return Buffer.concat([bytes.subarray(0, at), Buffer.alloc(e.len, e.byte), bytes.subarray(at)]);
    case 'dup':
      return Buffer.concat([bytes.subarray(0, at + e.len), bytes.subarray(at)]);
    case 'drop':
      return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + e.len)]);
  }
}

describe('CSR parsing (fuzz)', () => {
  const csrs: { pem: string; spki: Buffer }[] = [];
  beforeAll(async () => {
    for (const type of ['ecdsa-p256', 'rsa-2048'] as const) {
      const { csrPem } = await newKeyAndCsr(type);
      csrs.push({ pem: csrPem, spki: publicKeyOfCsr(csrPem) });
    }
  });

  it('mutated DER is refused with a bad request, or still carries the key it was signed with', () => {
    fuzz(fc.property(fc.nat(1), fc.array(edit, { minLength: 1, maxLength: 3 }), (which, edits) => {
      const csr = csrs[which];
      if (csr === undefined) throw new Error('no CSR');
      const bytes = edits.reduce(apply, der(csr.pem));
      const spki = accepted(pem(bytes));
      if (spki !== undefined) expect(spki.equals(csr.spki)).toBe(true);
    }), 1000);
  });

  it('mutated PEM text is refused with a bad request, or still carries the key it was signed with', () => {
    const textEdit = fc.tuple(fc.nat(), fc.constantFrom('', ' ', '\n', '\r\n', '=', '==', 'A', '-', '*', '\u0000', '-----END CERTIFICATE REQUEST-----', '-----BEGIN NEW CERTIFICATE REQUEST-----\n', 'é'), fc.nat(3));
    fuzz(fc.property(fc.nat(1), fc.array(textEdit, { minLength: 1, maxLength: 3 }), (which, edits) => {
      const csr = csrs[which];
      if (csr === undefined) throw new Error('no CSR');
      const text = edits.reduce((t, [at, s, drop]) => t.slice(0, at % (t.length + 1)) + s + t.slice((at % (t.length + 1)) + drop), csr.pem);
      const spki = accepted(text);
      if (spki !== undefined) expect(spki.equals(csr.spki)).toBe(true);
    }), 1000);
  });

  it('arbitrary bytes and text are refused with a bad request', () => {
    fuzz(fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }).map((b) => pem(Buffer.from(b))), fc.string({ unit: 'binary', maxLength: 200 })), (text) => {
      expect(accepted(text)).toBeUndefined();
    }), 1000);
  });
});
