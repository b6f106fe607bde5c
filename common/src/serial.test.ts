import { describe, expect, it } from 'vitest';
import { randomSerialHex } from './serial.ts';

describe('randomSerialHex', () => {
  it('is always a minimal positive DER integer (what OpenSSL accepts)', () => {
    for (let i = 0; i < 5000; i++) {
      const hex = randomSerialHex();
      expect(hex.length % 2).toBe(0);
      const first = parseInt(hex.slice(0, 2), 16);
      const second = parseInt(hex.slice(2, 4), 16);
      expect(first < 0x80).toBe(true); // not negative
      if (first === 0) expect(second >= 0x80).toBe(true); // a 00 byte only where it is needed
    }
  });
});
