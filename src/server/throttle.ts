/**
 * The failed-login penalty (design.md §8), per client address and per user name. Each failure doubles the
 * penalty of its address and of its user, from `baseMs` up to `maxMs`; a key quiet for `forgetMs` is forgotten.
 *
 * The penalty gates the *next verification*, not only the failed reply (issue 13 #2): a verification from a
 * penalised address, or for a penalised user, waits until the last failure's time plus the penalty, whatever
 * the client did meanwhile (waited for the -ERR, hung up, or opened other connections). So guesses per minute
 * stay bounded: about one per penalty per connection, all connections of an address released together, which
 * with the 15 s cap and 20 connections per address is Dovecot's ~80 a minute (its auth-penalty.c works the
 * same way: 2 s doubling to 15 s, checked before the password lookup). A right password from a penalised
 * address waits too, or it would answer at once and give the guess away.
 *
 * Failures are counted the same whatever the reason (unknown user or wrong password), so neither replies nor
 * timing tell the two apart.
 */
export class LoginThrottle {
  /** Keyed `a:<address>` and `u:<user>`; Map order doubles as least-recently-failed order. */
  private readonly entries = new Map<string, { failures: number; last: number }>();
  private readonly maxEntries: number;

  constructor(
    private readonly baseMs: number,
    private readonly maxMs: number,
    private readonly forgetMs = 15 * 60_000,
    maxEntries = 100_000,
  ) {
    this.maxEntries = maxEntries;
  }

  /**
   * Records a failure from `address` (for `user`, when the attempt named one) and returns how long to wait
   * before answering it: the penalty of the address.
   */
  fail(address: string, user?: string, now = Date.now()): number {
    const delay = this.bump(`a:${address}`, now);
    if (user !== undefined) this.bump(`u:${user}`, now);
    return delay;
  }

  /** How long a verification from `address` (for `user`, when known) must wait now; 0 when not penalised. */
  wait(address: string, user?: string, now = Date.now()): number {
    const a = this.remaining(`a:${address}`, now);
    return user === undefined ? a : Math.max(a, this.remaining(`u:${user}`, now));
  }

  /** A successful login clears the record of its address and of its user. */
  succeed(address: string, user?: string): void {
    this.entries.delete(`a:${address}`);
    if (user !== undefined) this.entries.delete(`u:${user}`);
  }

  failures(address: string, now = Date.now()): number {
    const e = this.entries.get(`a:${address}`);
    return e && now - e.last <= this.forgetMs ? e.failures : 0;
  }

  private penalty(failures: number): number {
    if (this.baseMs === 0 || failures === 0) return 0;
    return Math.min(this.maxMs, this.baseMs * 2 ** Math.min(failures - 1, 20));
  }

  private remaining(key: string, now: number): number {
    const e = this.entries.get(key);
    if (!e || now - e.last > this.forgetMs) return 0;
    return Math.max(0, e.last + this.penalty(e.failures) - now);
  }

  private bump(key: string, now: number): number {
    let e = this.entries.get(key);
    if (!e || now - e.last > this.forgetMs) e = { failures: 0, last: now };
    e.failures++;
    e.last = now;
    this.entries.delete(key); // re-insert: most recently failed last
    this.entries.set(key, e);
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    return this.penalty(e.failures);
  }
}
