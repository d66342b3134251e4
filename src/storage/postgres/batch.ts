/**
 * The hot statements of many sessions (the login, the lease's release) sent together: several prepared
 * statements in one write on one connection, ended by one Sync, their rows handed back to each caller.
 *
 * Why: a POP3 session on this store costs two statements, each a round trip with its fixed costs on both
 * sides (the driver's write and parse, the backend's wake-up, the network's latency when the database is on
 * another host). Statements that arrive while others are on their way wait for them and then go together, so
 * under load one round trip serves several sessions (6.7 statements on average at 32 busy connections in the
 * bench; the server's CPU per session, median of 6 rounds, 1 290 → 1 128 µs); a lone statement on an idle server goes at once
 * (one turn of the event loop later). The database's own CPU did not fall with the round trips: its extra cost
 * was page faults (pool.ts, WARM_BYTES).
 *
 * Semantics, which the callers rely on:
 * - The statements of a batch run in order in one implicit transaction (the extended protocol's Sync), which
 *   commits before any caller is answered: a lease taken or dropped is committed when its promise resolves,
 *   so QUIT's `+OK` still comes only after the release is committed.
 * - Statements are sorted by mailbox (a release before a login of the same mailbox), so two batches always
 *   lock lease rows in the same order and cannot deadlock each other.
 * - When one statement fails, PostgreSQL rolls the whole batch back; each of its statements is then run again
 *   alone (an error of the database's, with a SQLSTATE), so one session's failure is only its own. A failure
 *   of the connection (broken, timed out), a cancelled or timed-out statement and a server shutting down or
 *   short of resources are every caller's, as they would have been alone (running them again would only add
 *   load).
 * - Rows come back as the text the database sent (no type parsing): the callers read their few columns.
 */

import type pg from 'pg';
import type { Connection } from 'pg';
import { Submittable } from './submittable.ts';

/** A field of a data row as the database sent it (text format), or null. */
export type Field = string | null;

export interface BatchedStatement {
  /** Prepared-statement name (each connection parses it once). */
  readonly name: string;
  readonly text: string;
  readonly values: readonly (string | number | null)[];
  /** Lock order within a batch: the mailbox the statement touches. */
  readonly mailboxId: string;
  /** Within one mailbox, lower goes first (a release before a login). */
  readonly rank: number;
}

interface Pending {
  readonly stmt: BatchedStatement;
  rows: Field[][];
  resolve(rows: Field[][]): void;
  reject(err: Error): void;
}

/** The connection as a submittable sees it (pg's declarations omit these). */
interface ProtocolConnection {
  parsedStatements: Record<string, string>;
  stream: { cork?(): void; uncork?(): void };
  parse(q: { name: string; text: string; types: unknown[] }): void;
  close(msg: { type: 'S'; name: string }): void;
  bind(config: { statement: string; values: (string | null)[] }): void;
  execute(config: { portal: string; rows: number }): void;
  sync(): void;
}

/** pg-pool's callback form, which takes a submittable (its typings only know the promise form for it). */
interface CallbackPool {
  query(q: Batch, cb: (err: Error | null | undefined) => void): void;
}

/** One write of several statements and one Sync; resolves at ReadyForQuery (after the commit). */
class Batch extends Submittable<void> {
  private current = 0;
  private readonly parsing: Array<[string, string]> = [];

  constructor(readonly items: readonly Pending[]) {
    super();
  }

  submit(connection: Connection): void {
    const c = connection as unknown as ProtocolConnection;
    c.stream.cork?.();
    try {
      for (const { stmt } of this.items) {
        if (c.parsedStatements[stmt.name] !== undefined || this.parsing.some(([n]) => n === stmt.name)) continue;
        // A Parse of an earlier batch may have succeeded before that batch failed (prepared statements
        // outlive a rollback): close first, which is no error when there is nothing to close.
        c.close({ type: 'S', name: stmt.name });
        c.parse({ name: stmt.name, text: stmt.text, types: [] });
        this.parsing.push([stmt.name, stmt.text]);
      }
      for (const { stmt } of this.items) {
        c.bind({ statement: stmt.name, values: stmt.values.map((v) => (v === null ? null : String(v))) });
        c.execute({ portal: '', rows: 0 });
      }
      c.sync();
    } finally {
      c.stream.uncork?.();
    }
  }

  override handleDataRow(msg: { fields: Field[] }): void {
    this.items[this.current]?.rows.push(msg.fields);
  }

  override handleCommandComplete(): void {
    this.current++;
  }

  handleError(err: Error): void {
    this.finish(err);
  }

  handleReadyForQuery(connection: Connection): void {
    if (this.finished) return;
    const c = connection as unknown as ProtocolConnection;
    for (const [name, text] of this.parsing) c.parsedStatements[name] = text;
    this.finish(null);
  }
}

/** After this long, a batch on its way no longer holds back the next one (see schedule()). */
const SLOW_MS = 200;

export class StatementBatcher {
  private queue: Pending[] = [];
  private inFlight = 0;
  private scheduled = false;

  /**
   * @param maxInFlight batches on their way at once (each on its own connection); statements arriving
   *   meanwhile wait and go together.
   * @param maxBatch statements per batch at most.
   */
  constructor(
    private readonly pool: pg.Pool,
    private readonly maxInFlight: number,
    private readonly maxBatch: number,
  ) {}

  /** Runs `stmt` (in a batch with others that are waiting); resolves with its rows after the commit. */
  run(stmt: BatchedStatement): Promise<Field[][]> {
    return new Promise<Field[][]>((resolve, reject) => {
      this.queue.push({ stmt, rows: [], resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    // The statements of this turn of the event loop go together.
    setImmediate(() => {
      this.scheduled = false;
      while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
        const items = this.queue.length <= this.maxBatch ? this.queue : this.queue.slice(0, this.maxBatch);
        this.queue = items === this.queue ? [] : this.queue.slice(this.maxBatch);
        items.sort(lockOrder);
        this.inFlight++;
        // A batch that takes long (a statement waiting for a row lock, a slow database) stops counting
        // against maxInFlight after SLOW_MS, so it delays the statements behind it by that much at most; the
        // pool's size still bounds the connections.
        let counted = true;
        const uncount = () => {
          if (!counted) return;
          counted = false;
          this.inFlight--;
          this.schedule();
        };
        const slow = setTimeout(uncount, SLOW_MS);
        void this.send(items).finally(() => {
          clearTimeout(slow);
          uncount();
        });
      }
    });
  }

  /** Sends a batch on a pooled connection; resolves with its error, or null once it committed. */
  private submit(batch: Batch): Promise<Error | null> {
    return new Promise((resolve) => (this.pool as unknown as CallbackPool).query(batch, (e) => resolve(e ?? null)));
  }

  private async send(items: Pending[]): Promise<void> {
    const err = await this.submit(new Batch(items));
    if (err === null) {
      for (const it of items) it.resolve(it.rows);
      return;
    }
    // The database refused one statement and rolled the batch back: each runs again alone, so the error is
    // only the one session's. Anything else would fail them alone too, and running them again would only add
    // load: the connection broke or timed out (no SQLSTATE), the statement was cancelled or timed out, the
    // server is shutting down or short of resources (classes 57, 08, 53, 58).
    const code = (err as { code?: unknown }).code;
    if (items.length === 1 || typeof code !== 'string' || /^(08|53|57|58)/.test(code)) {
      for (const it of items) it.reject(err);
      return;
    }
    await Promise.all(
      items.map(async (it) => {
        it.rows = [];
        const again = await this.submit(new Batch([it]));
        if (again === null) it.resolve(it.rows);
        else it.reject(again);
      }),
    );
  }
}

function lockOrder(a: Pending, b: Pending): number {
  const x = a.stmt.mailboxId;
  const y = b.stmt.mailboxId;
  if (x !== y) return x < y ? -1 : 1;
  return a.stmt.rank - b.stmt.rank;
}
