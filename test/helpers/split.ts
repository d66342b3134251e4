/** Helpers for tests that feed a codec its input in pieces: at chosen split points, byte by byte. */
import { Buffer } from 'node:buffer';

/** Latin-1 bytes of a string (one byte per character, so any byte value can be written). */
export const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** A string quoted for assertion messages. */
export const show = (s: string): string => JSON.stringify(s);

/** `buf` cut at the given increasing offsets. */
export function splitAt(buf: Buffer, points: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(buf.subarray(from, p));
    from = p;
  }
  out.push(buf.subarray(from));
  return out;
}
