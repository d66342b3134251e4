import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Timing-safe string equality for secrets. timingSafeEqual needs equal lengths, and checking the lengths
 * first would leak the secret's length; comparing SHA-256 digests (always 32 bytes) leaks nothing useful.
 */
export function timingSafeEqualStrings(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}
