/**
 * Random hex tokens (APOP timestamps, maildrop lock tokens) from a pool of cryptographically strong bytes
 * filled 4 KiB at a time: `randomBytes(9)` per connection cost a crypto job and a getpid(2) (OpenSSL's fork
 * check) each, two per short session, which a CPU profile of one-connection sessions showed at 0.6 % of the
 * server's wall time. The bytes are the same CSPRNG's; each is handed out once.
 */
import { randomFillSync } from 'node:crypto';

const POOL_SIZE = 4096;
const pool = Buffer.alloc(POOL_SIZE);
let used = POOL_SIZE;

/** `bytes` random bytes (at most 256) as lowercase hex. */
export function randomHex(bytes: number): string {
  if (!(Number.isInteger(bytes) && bytes > 0 && bytes <= 256)) throw new RangeError('randomHex: 1 to 256 bytes');
  if (used + bytes > POOL_SIZE) {
    randomFillSync(pool);
    used = 0;
  }
  const hex = pool.toString('hex', used, used + bytes);
  pool.fill(0, used, used + bytes); // handed out: not kept in memory
  used += bytes;
  return hex;
}
