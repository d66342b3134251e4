/**
 * The failed-login penalty shared by every frontend on one PostgreSQL database (`login_failures`, keyed
 * `a:<address>` and `u:<user>`, as throttle.ts keys its map): an attacker who spreads guesses over many
 * frontends meets the same doubling penalty as on one. The clock is the database's, so frontends with skewed
 * clocks agree.
 *
 * Each decision also goes through the process's own coordinator (`inner`: this process, or the cluster
 * primary), which keeps per-node connection counts and a local copy of the penalty. When the database cannot
 * be reached the local penalty still applies (never less than one frontend alone would impose), and logins
 * are not blocked by the outage.
 *
 * Connection counts per address stay per node (`inner`): with N frontends an address can hold at most
 * N × limits.max_connections_per_address connections (README, "PostgreSQL store"). Counting them in the
 * database would cost a write per connection and a cleanup for every crashed node.
 */
import type pg from 'pg';

/** The server's Coordinator (src/server/coordinator.ts), restated so storage does not import the server. */
export interface PenaltyCoordinator {
  acquire(address: string, limit: number): Promise<boolean>;
  release(address: string): void;
  gate(address: string, user?: string): Promise<number>;
  fail(address: string, user?: string): Promise<number>;
  succeed(address: string, user?: string): void;
}

export interface SharedPenaltySettings {
  readonly baseMs: number;
  readonly maxMs: number;
  /** A key quiet this long is forgotten (default 15 minutes, as throttle.ts). */
  readonly forgetMs?: number;
}

export class SharedPenaltyCoordinator implements PenaltyCoordinator {
  private readonly forgetMs: number;
  private readonly pruner: NodeJS.Timeout;
  /**
   * Keys this process saw in `login_failures` (gate) or wrote there (fail), with when: a success deletes only
   * these, so the login of a user with no failures costs no statement. Every verification is gated first, so
   * a row that exists is seen; one written by another frontend between the gate and the success stays until
   * it is forgotten (a failure that happened meanwhile).
   */
  private readonly known = new Map<string, number>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly inner: PenaltyCoordinator,
    private readonly settings: SharedPenaltySettings,
  ) {
    this.forgetMs = settings.forgetMs ?? 15 * 60_000;
    this.pruner = setInterval(() => void this.prune(), 5 * 60_000);
    this.pruner.unref();
  }

  close(): void {
    clearInterval(this.pruner);
  }

  acquire(address: string, limit: number): Promise<boolean> {
    return this.inner.acquire(address, limit);
  }

  release(address: string): void {
    this.inner.release(address);
  }

  private penalty(failures: number): number {
    const { baseMs, maxMs } = this.settings;
    if (baseMs === 0 || failures === 0) return 0;
    return Math.min(maxMs, baseMs * 2 ** Math.min(failures - 1, 20));
  }

  async gate(address: string, user?: string): Promise<number> {
    const local = await this.inner.gate(address, user);
    if (this.settings.baseMs === 0) return local;
    const keys = user === undefined ? [`a:${address}`] : [`a:${address}`, `u:${user}`];
    try {
      const r = await this.pool.query<{ address: string; failures: number; age: number }>({
        name: 'postern_penalty_gate',
        text: `select address, failures, (extract(epoch from now() - last_failure) * 1000)::float8 as age
                 from login_failures where address = any($1)`,
        values: [keys],
      });
      let wait = local;
      for (const row of r.rows) {
        this.known.set(row.address, Date.now());
        if (row.age > this.forgetMs) continue;
        wait = Math.max(wait, this.penalty(row.failures) - row.age);
      }
      return Math.max(0, Math.ceil(wait));
    } catch {
      return local;
    }
  }

  async fail(address: string, user?: string): Promise<number> {
    const local = await this.inner.fail(address, user);
    if (this.settings.baseMs === 0) return local;
    const keys = user === undefined ? [`a:${address}`] : [`a:${address}`, `u:${user}`];
    try {
      const r = await this.pool.query<{ address: string; failures: number }>(
        `insert into login_failures as f (address, failures, last_failure)
           select k, 1, now() from unnest($1::text[]) as k
         on conflict (address) do update
           set failures = case when f.last_failure < now() - $2 * interval '1 millisecond' then 1 else f.failures + 1 end,
               last_failure = now()
         returning address, failures`,
        [keys, this.forgetMs],
      );
      for (const key of keys) this.known.set(key, Date.now());
      const mine = r.rows.find((row) => row.address === keys[0]);
      return Math.max(local, this.penalty(mine?.failures ?? 0));
    } catch {
      return local;
    }
  }

  succeed(address: string, user?: string): void {
    this.inner.succeed(address, user);
    const keys = (user === undefined ? [`a:${address}`] : [`a:${address}`, `u:${user}`]).filter((k) =>
      this.known.delete(k),
    );
    if (keys.length === 0) return;
    this.pool.query('delete from login_failures where address = any($1)', [keys]).catch(() => {});
  }

  /** Forgets old rows (called now and then; the table stays the size of recent attackers). */
  async prune(): Promise<void> {
    const old = Date.now() - this.forgetMs;
    for (const [key, at] of this.known) if (at < old) this.known.delete(key);
    await this.pool
      .query("delete from login_failures where last_failure < now() - $1 * interval '1 millisecond'", [this.forgetMs])
      .catch(() => {});
  }
}
