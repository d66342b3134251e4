/**
 * APOP, RFC 1939 §7. The server's greeting carries a timestamp in msg-id form; the client answers with the
 * MD5 of that timestamp followed by the shared secret, in lower-case hex. The server must know the secret in
 * plaintext, which is why only users stored with one (passwd.ts: {PLAIN}/{CLEAR} or `apop_secret=`) can use
 * APOP, and why the server advertises it only when such a user exists.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const HEX_DIGEST = /^[0-9a-fA-F]{32}$/;

/**
 * True when `digestHex` is MD5(timestamp + secret). The client's digest is checked for shape (32 hex digits;
 * upper-case is accepted, as Dovecot does) and then compared in constant time with the expected one, so a
 * wrong digest reveals nothing about how close it was.
 */
export function verifyApop(secret: string, timestamp: string, digestHex: string): boolean {
  if (!HEX_DIGEST.test(digestHex)) return false;
  const expected = createHash('md5').update(timestamp, 'utf8').update(secret, 'utf8').digest();
  return timingSafeEqual(expected, Buffer.from(digestHex, 'hex'));
}

/**
 * A fresh greeting timestamp `<pid.random@host>` (RFC 1939 §7: msg-id syntax, different in every banner).
 * The random part makes it unguessable, so a captured APOP answer cannot be replayed.
 */
export function apopTimestamp(host: string): string {
  const domain = host.replace(/[^A-Za-z0-9.-]/g, '') || 'localhost';
  return `<${process.pid}.${randomBytes(12).toString('hex')}@${domain}>`;
}
