// For the full-disk fault tests: a file system filled to its last byte, as a disk fills in production.
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';

/** Bounds the filling: no test tmpfs is this large. */
const MAX_FILL_BYTES = 1024 * 1024 * 1024;

/**
 * Fills the file system under `dir` to the last byte (64 KiB at a time, then the last pages byte by
 * byte: a partly used page of another file would still take a short write) and returns the filler,
 * to delete when space is to be freed. Fails the test when the file system never fills, or refuses
 * the write for another reason than ENOSPC.
 */
export function fillToTheLastByte(dir: string): string {
  const filler = join(dir, 'filler');
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  for (let written = 0; written < MAX_FILL_BYTES; written += chunk.length) {
    try {
      appendFileSync(filler, chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      for (let size = 1024; size >= 1; size = Math.floor(size / 2)) {
        try {
          for (;;) appendFileSync(filler, chunk.subarray(0, size));
        } catch {
          // that size no longer fits
        }
      }
      return filler;
    }
  }
  throw new Error(`${dir} never filled up`);
}
