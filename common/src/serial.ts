import { randomBytes } from 'node:crypto';

/** A random positive 128-bit serial as DER INTEGER hex (a 00 prefix keeps a high bit from meaning negative). */
export function randomSerialHex(): string {
  let bytes = randomBytes(16);
  // A leading zero byte would make the DER encoding non-minimal; draw again (1 in 256).
  while (bytes[0] === 0) bytes = randomBytes(16);
  const hex = bytes.toString('hex');
  return ((bytes[0] ?? 0) & 0x80) !== 0 ? `00${hex}` : hex;
}
