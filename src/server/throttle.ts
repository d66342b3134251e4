/**
 * Failed-login penalty per client address (design.md §8). Each failure from an address doubles the delay
 * before the next failed answer, from `baseMs` up to `maxMs`; an address that stays quiet for `forgetMs` is
 * forgotten. The delay is applied to every failed login whatever the reason (unknown user or wrong password),
 * so replies and timing do not tell the two apart.
 */
export class LoginThrottle {
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

  /** Records a failure from `address` and returns how long to wait before answering it. */
  fail(address: string, now = Date.now()): number {
    let e = this.entries.get(address);
    if (!e || now - e.last > this.forgetMs) e = { failures: 0, last: now };
    e.failures++;
    e.last = now;
    this.entries.delete(address); // re-insert: Map order doubles as least-recently-failed order
    this.entries.set(address, e);
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    if (this.baseMs === 0) return 0;
    return Math.min(this.maxMs, this.baseMs * 2 ** Math.min(e.failures - 1, 20));
  }

  /** A successful login from the address clears its record. */
  succeed(address: string): void {
    this.entries.delete(address);
  }

  failures(address: string, now = Date.now()): number {
    const e = this.entries.get(address);
    return e && now - e.last <= this.forgetMs ? e.failures : 0;
  }
}
