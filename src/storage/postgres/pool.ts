/**
 * The connection pool shared by the PostgreSQL store, the user database and the login penalty of one
 * process. Sessions never hold a connection: each statement borrows one for its length (a delivery or a QUIT
 * for its transaction), so 10 000 idle POP3 sessions need no more than `pool_size` connections per process.
 *
 * A database that is down, restarting or too slow is a temporary condition: every error becomes
 * StorageError('temp') (the server answers `-ERR [SYS/TEMP]`), a broken connection is dropped from the pool
 * and the next statement opens a new one, so the process reconnects by itself once the database is back.
 */
import pg from 'pg';
import { StorageError } from '../types.ts';

export interface PgSettings {
  /** postgres://user:pass@host:port/db; unset: the libpq environment variables (PGHOST, PGUSER, …). */
  readonly url?: string;
  /** Connections per process (default 10). */
  readonly poolSize?: number;
  /** Server-side statement_timeout, and the client-side bound on a query, in ms (default 30 000). */
  readonly statementTimeoutMs?: number;
  /** Bound on opening a connection, in ms (default 5 000). */
  readonly connectTimeoutMs?: number;
}

export interface PgLogger {
  warn(fields: Record<string, unknown>, msg: string): void;
}

/**
 * What a backend allocates and frees once when its connection opens. glibc's malloc returns freed memory to
 * the kernel (trims the heap, unmaps large blocks) above thresholds that it raises only when a block it
 * mapped is freed (mallopt(3), "dynamic mmap threshold"): a backend that has only ever freed small blocks
 * keeps giving back and faulting in again the memory of every login that brings bodies along — 70 page
 * faults per POP3 session here, half the database's CPU per session (in `bench/pg-session-cost.ts`, 0-19
 * faults and 430-680 µs of database CPU per session in the rounds where the thresholds happened to be high,
 * 69-75 faults and 1 280-1 400 µs in the others). Freeing 4 MiB at the start raises them to 4 MiB (mapped
 * blocks) and 8 MiB (heap trimming) for the backend's life, above what a batch of logins uses, at the cost
 * of up to 8 MiB of freed memory kept per backend. Other allocators ignore it.
 */
const WARM_BYTES = 4 * 1024 * 1024;
const WARM_SQL = `select length(repeat('x', ${WARM_BYTES}))`;

export function createPgPool(settings: PgSettings, logger?: PgLogger): pg.Pool {
  const statementTimeout = settings.statementTimeoutMs ?? 30_000;
  const pool = new pg.Pool({
    connectionString: settings.url,
    max: settings.poolSize ?? 10,
    connectionTimeoutMillis: settings.connectTimeoutMs ?? 5_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: statementTimeout,
    // Bounds a query whose server went silent (a partition, a host that died): the server-side timeout
    // cannot fire then.
    query_timeout: statementTimeout + 5_000,
    application_name: 'postern',
    keepAlive: true,
  });
  // An idle connection that breaks (database restart) is reported here; without a listener it would crash
  // the process. The pool has already dropped it.
  pool.on('error', (err) => logger?.warn({ err: err.message }, 'postgres: idle connection lost'));
  // Every new connection first has its backend allocate and free WARM_BYTES (see there). pg runs a
  // connection's queries in order, so this goes before anything the store sends on it.
  pool.on('connect', (client) => {
    client.query(WARM_SQL).catch(() => {}); // a failure here is met again by the next statement
  });
  return pool;
}

/** Any database failure, as a storage error: temporary unless it can never succeed. */
export function pgError(e: unknown, what: string): StorageError {
  if (e instanceof StorageError) return e;
  const code = (e as { code?: string }).code;
  const msg = e instanceof Error ? e.message : String(e);
  // Undefined table/column/function: the schema is not what this program expects (an operator must act).
  if (code === '42P01' || code === '42703' || code === '42883') {
    return new StorageError('perm', `${what}: database schema problem: ${msg}`, { cause: e });
  }
  return new StorageError('temp', `${what}: ${msg}`, { cause: e });
}

/** Runs `fn` inside a transaction on one pooled connection; rolls back on any error. */
export async function inTransaction<T>(pool: pg.Pool, what: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (e) {
    throw pgError(e, what);
  }
  let broken = false;
  try {
    await client.query('begin');
    const out = await fn(client);
    await client.query('commit');
    return out;
  } catch (e) {
    try {
      await client.query('rollback');
    } catch {
      broken = true; // the connection is gone; do not give it back
    }
    throw pgError(e, what);
  } finally {
    client.release(broken);
  }
}
