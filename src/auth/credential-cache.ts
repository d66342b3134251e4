/**
 * A cache of verified credentials, as Dovecot's auth cache and every large mail system keep one: POP3 clients
 * log in again every few minutes with the same password, and without a cache each of those logins costs a full
 * argon2id verification (tens of milliseconds of CPU, the whole cost of a short session).
 *
 * What is kept is only the fact "this user proved this password, until then": the key is an HMAC-SHA256 of the
 * user and the password under a random key made when the process starts and never written anywhere, so neither
 * the password nor anything that could be checked against a guess offline is stored (a memory dump yields keyed
 * digests under a key that dies with the process).
 *
 * Security reasoning:
 *   - Only successful verifications are inserted. A wrong password or an unknown user is never a hit, so it
 *     still pays the full verification; the faster answer of a hit is only ever seen by a caller who already
 *     sent the right password, and tells them nothing the `+OK` does not.
 *   - Entries live at most `ttlMs` (so a password changed in another way is honoured within that time), the
 *     cache holds at most `maxEntries` (least recently used first out), and the owner clears it whenever the
 *     users file changes or is reloaded (SIGHUP, `postern user passwd`/`del`).
 *   - Per process: with `server.workers` > 1 each worker keeps its own, which costs one verification per
 *     worker per user and TTL, and needs no secret shared between processes.
 */
import { createHmac, randomBytes } from 'node:crypto';

export interface CredentialCacheOptions {
  /** Most entries kept; 0 disables the cache. */
  readonly maxEntries: number;
  /** How long a verification is trusted, in milliseconds; 0 disables the cache. */
  readonly ttlMs: number;
  /** Clock, for tests. */
  readonly now?: () => number;
}

export class CredentialCache {
  /** Key → expiry time. Map order is insertion order: a hit is re-inserted, so the first key is the LRU one. */
  private readonly entries = new Map<string, number>();
  private readonly key = randomBytes(32);
  private readonly maxEntries: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  hits = 0;
  misses = 0;

  constructor(options: CredentialCacheOptions) {
    this.maxEntries = Math.max(0, Math.floor(options.maxEntries));
    this.ttlMs = Math.max(0, options.ttlMs);
    this.now = options.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.maxEntries > 0 && this.ttlMs > 0;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The cache key of a user and password: never the password itself. */
  keyOf(user: string, password: string): string {
    // Length-prefixed, so ("ab", "c") and ("a", "bc") can never share a key.
    return createHmac('sha256', this.key)
      .update(`${Buffer.byteLength(user)}:${user}\0${password}`)
      .digest('base64');
  }

  /** True when this user proved this password within the TTL. Counts a hit or a miss. */
  has(key: string): boolean {
    if (!this.enabled) return false;
    const expires = this.entries.get(key);
    if (expires === undefined) {
      this.misses++;
      return false;
    }
    this.entries.delete(key);
    if (expires <= this.now()) {
      this.misses++;
      return false;
    }
    this.entries.set(key, expires); // most recently used now
    this.hits++;
    return true;
  }

  /** Records a successful verification. Never call it for a failed one. */
  add(key: string): void {
    if (!this.enabled) return;
    this.entries.delete(key);
    this.entries.set(key, this.now() + this.ttlMs);
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }

  /** Forgets everything (the users file changed, or a reload). */
  clear(): void {
    this.entries.clear();
  }
}
