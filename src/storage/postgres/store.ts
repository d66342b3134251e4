/**
 * A MailStore in PostgreSQL, shared by any number of Postern processes on any number of machines (schema:
 * schema.ts; connections: pool.ts; delivery: delivery.ts; an open maildrop: maildrop.ts).
 *
 * - Listing: a maildrop's snapshot is one index range scan of `messages` (uidl and size are columns); no
 *   body is read for STAT, LIST or UIDL.
 * - Bodies: stored in chunks of `chunkSize` octets; a RETR reads one chunk per statement when the reader
 *   wants more, so a 100 MB message never sits in memory.
 * - Delivery: the body is staged first without a connection (spool.ts), then one short transaction
 *   publishes it: the chunks, the mailbox row (order number, counts; its row lock orders concurrent
 *   deliveries to one mailbox for the instant of the commit), the quota check against the new counts, and
 *   the message row. Nothing is visible before COMMIT; a failure anywhere stores nothing.
 * - The lock: a lease row (owner, expiry on the database clock) taken with one upsert that succeeds only when
 *   there is no row or it has expired, renewed every lease/3 while the maildrop lives. No connection is held
 *   between statements. A commit re-checks, under the lease row's lock and in the deleting transaction, that
 *   the lease is still ours and unexpired, so a holder that lost it (database unreachable past the expiry,
 *   taken over by another node) deletes nothing.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type pg from 'pg';
import type {
  DeliverOptions,
  DeliveryResult,
  MailboxStats,
  Maildrop,
  MailStore,
  MessageInfo,
  OpenOptions,
} from '../types.ts';
import { assertMailboxId, StorageError } from '../types.ts';
import { StatementBatcher } from './batch.ts';
import { deliverMessage } from './delivery.ts';
import { PostgresMaildrop, unescapeBytea } from './maildrop.ts';
import { createPgPool, type PgLogger, type PgSettings, pgError } from './pool.ts';
import { assertSchema } from './schema.ts';

export interface PostgresStoreOptions extends PgSettings {
  /** Use this pool (shared with the user database) instead of making one; it is not closed by close(). */
  readonly pool?: pg.Pool;
  /** Lease length of the maildrop lock in ms (default 60 000); renewed every third of it. */
  readonly leaseMs?: number;
  /** Body chunk size in octets (default 256 KiB). */
  readonly chunkSize?: number;
  readonly logger?: PgLogger;
}

export const DEFAULT_CHUNK_SIZE = 256 * 1024;
export const DEFAULT_LEASE_MS = 60_000;
/** Read-ahead at login (see openMaildrop): at most this many bodies and octets. */
const LOGIN_READ_AHEAD_MESSAGES = 64;
const LOGIN_READ_AHEAD_BYTES = 256 * 1024;
/** Statements per batch of logins and releases at most (batch.ts). */
const BATCH_MAX = 16;
/** Mailboxes whose read-ahead this process remembers (the oldest entry goes first). */
const READ_AHEAD_ENTRIES = 10_000;

interface LoginRow {
  k: number;
  got: string | null;
  message_id: string;
  uidl: string;
  size: string;
  /** A body read ahead, as encode(data, 'escape') (see unescapeBytea). */
  data: string | null;
}

/**
 * The login: the lease taken (only when there is no row, it expired or its owner is $6: a lease of this
 * process whose release is still on its way, see dropLease), the listing (an index-only range
 * scan of messages_listing) and, with $4 > 0, the bodies of up to $4 one-chunk messages at the start of the
 * mailbox while their running total of octets stays within $5 (as encode(data, 'escape'): see
 * unescapeBytea): driven by those few rows (f, materialized;
 * the lateral subqueries fenced with `offset 0`, so each is a primary-key lookup whatever the mailbox's size).
 */
const LOGIN_SQL = `with l as (
    insert into maildrop_leases (mailbox_id, owner, expires_at, taken_at)
      values ($1, $2, now() + $3 * interval '1 millisecond', now())
    on conflict (mailbox_id) do update
      set owner = excluded.owner, expires_at = excluded.expires_at, taken_at = excluded.taken_at
      where maildrop_leases.expires_at < excluded.taken_at or maildrop_leases.owner = $6
    returning owner),
  f as materialized (select message_id, sum(size) over (order by ord) as upto from messages
        where mailbox_id = $1 and $4::int > 0 and exists (select 1 from l) order by ord limit $4::int)
  select 0 as k, (select count(*) from l)::text as got, null as message_id, null as uidl, null as size,
         null as data, 0::bigint as ord
  union all
  (select 1, null, m.message_id::text, m.uidl, m.size::text, null, m.ord from messages m
    where m.mailbox_id = $1 and exists (select 1 from l))
  union all
  (select 2, null, f.message_id::text, null, null, encode(c.data, 'escape'), 0 from f
    cross join lateral (select chunks from messages m
                        where m.mailbox_id = $1 and m.message_id = f.message_id offset 0) m
    cross join lateral (select data from message_chunks c
                        where c.mailbox_id = $1 and c.message_id = f.message_id and c.seq = 0 offset 0) c
    where f.upto <= $5::bigint and m.chunks = 1)
  order by k, ord`;
const LISTING_SQL = `select 1 as k, null as got, message_id::text, uidl, size::text, null as data from messages
  where mailbox_id = $1 order by ord`;

export class PostgresStore implements MailStore {
  readonly pool: pg.Pool;
  readonly leaseMs: number;
  readonly chunkSize: number;
  private readonly ownsPool: boolean;
  /** The logins and lease releases, batched under load (batch.ts). */
  private readonly batcher: StatementBatcher;
  private readonly drops = new Set<PostgresMaildrop>();
  /** Mailbox → how many messages its last session here retrieved in order from the first (openMaildrop). */
  private readonly readAhead = new Map<string, number>();
  /** Identifies this process in lease rows (for an operator reading the table). */
  readonly nodeId = `${process.pid}-${randomBytes(4).toString('hex')}`;
  private closed = false;

  constructor(options: PostgresStoreOptions = {}) {
    this.ownsPool = options.pool === undefined;
    this.pool = options.pool ?? createPgPool(options, options.logger);
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    // A quarter of the pool for batches on their way at once (2 of the default 10): under load each then
    // carries several statements, and the rest of the pool stays free for deliveries, QUITs and renewals.
    const poolSize = (this.pool as unknown as { options?: { max?: number } }).options?.max ?? 10;
    this.batcher = new StatementBatcher(this.pool, Math.max(1, Math.floor(poolSize / 4)), BATCH_MAX);
    if (!(this.leaseMs >= 1000)) throw new TypeError('PostgresStore: leaseMs must be at least 1000');
    if (!(this.chunkSize >= 1024)) throw new TypeError('PostgresStore: chunkSize must be at least 1024');
  }

  /** Connects, checks the schema version (refusing an unknown one) and returns the store. */
  static async open(options: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const store = new PostgresStore(options);
    try {
      await assertSchema(store.pool).catch((e: unknown) => {
        throw pgError(e, 'schema check');
      });
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }

  async openMaildrop(mailboxId: string, options?: OpenOptions): Promise<Maildrop> {
    this.assertOpen();
    assertMailboxId(mailboxId);
    const lock = options?.lock !== false;
    const owner = lock ? `${this.nodeId}/${randomUUID()}` : null;
    // The lease and the listing in one round trip (the login hot path): row 0 says whether the lease was
    // taken; the messages follow, read only when it was. When the last session of this mailbox in this
    // process retrieved its messages in order from the first (readAhead), the bodies of that many small
    // messages at the start come along too (rows k = 2, bounded by LOGIN_READ_AHEAD_BYTES): a client that
    // downloads its mailbox costs no statement for them.
    const ahead = lock ? Math.min(this.readAhead.get(mailboxId) ?? 0, LOGIN_READ_AHEAD_MESSAGES) : 0;
    let rows: LoginRow[];
    try {
      if (lock) {
        // Batched with the logins and releases of other sessions under load (batch.ts).
        const fields = await this.batcher.run({
          name: 'postern_login',
          text: LOGIN_SQL,
          values: [
            mailboxId,
            owner,
            this.leaseMs,
            ahead,
            LOGIN_READ_AHEAD_BYTES,
            this.releasing.get(mailboxId) ?? null,
          ],
          mailboxId,
          rank: 1,
        });
        rows = fields.map(([k, got, message_id, uidl, size, data]) => ({
          k: Number(k),
          got,
          message_id: message_id ?? '',
          uidl: uidl ?? '',
          size: size ?? '0',
          data,
        }));
      } else {
        const r = await this.pool.query<LoginRow>({ name: 'postern_listing', text: LISTING_SQL, values: [mailboxId] });
        rows = r.rows;
      }
    } catch (e) {
      throw pgError(e, 'login');
    }
    if (lock && rows[0]?.got !== '1') throw new StorageError('inuse', 'maildrop is locked by another session');
    const messages: MessageInfo[] = [];
    const bodies = new Map<string, Buffer>();
    for (const row of rows) {
      if (row.k === 1) messages.push(Object.freeze({ id: row.message_id, uidl: row.uidl, size: Number(row.size) }));
      else if (row.k === 2 && row.data !== null) bodies.set(row.message_id, unescapeBytea(row.data));
    }
    const drop = new PostgresMaildrop(this, mailboxId, Object.freeze(messages), owner, bodies);
    this.drops.add(drop);
    return drop;
  }

  async deliver(mailboxId: string, message: Readable, options?: DeliverOptions): Promise<DeliveryResult> {
    this.assertOpen();
    assertMailboxId(mailboxId);
    return deliverMessage(this.pool, this.chunkSize, mailboxId, message, options);
  }

  async stats(mailboxId: string): Promise<MailboxStats> {
    this.assertOpen();
    assertMailboxId(mailboxId);
    try {
      const r = await this.pool.query<{ messages: string; bytes: string }>(
        'select messages, bytes from mailboxes where mailbox_id = $1',
        [mailboxId],
      );
      const row = r.rows[0];
      return row ? { messages: Number(row.messages), bytes: Number(row.bytes) } : { messages: 0, bytes: 0 };
    } catch (e) {
      throw pgError(e, 'stats');
    }
  }

  /** Every mailbox that has mail or session state (for `postern store migrate`). */
  async listMailboxes(): Promise<string[]> {
    try {
      const r = await this.pool.query<{ mailbox_id: string }>(
        'select mailbox_id from mailboxes union select distinct mailbox_id from messages order by 1',
      );
      return r.rows.map((x) => x.mailbox_id);
    } catch (e) {
      throw pgError(e, 'mailbox list');
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.drops].map((d) => d.release()));
    if (this.ownsPool) await this.pool.end().catch(() => {});
  }

  /** @internal `inOrder`: messages the session retrieved in order from the first (0: none, or not so). */
  forget(drop: PostgresMaildrop, inOrder: number): void {
    this.drops.delete(drop);
    this.readAhead.delete(drop.mailboxId);
    if (inOrder === 0) return;
    this.readAhead.set(drop.mailboxId, inOrder);
    if (this.readAhead.size > READ_AHEAD_ENTRIES) {
      for (const oldest of this.readAhead.keys()) {
        this.readAhead.delete(oldest);
        break;
      }
    }
  }

  /** Mailbox → owner of this process's lease of it whose release is in flight (the login's $6). */
  private readonly releasing = new Map<string, string>();

  /**
   * @internal Drops a lease if it is still ours; a failure leaves it to expire. Until the statement is done a
   * login of the same mailbox in this process may take the lease over (LOGIN_SQL's $6): a client whose
   * connection broke and that reconnects at once never meets its own old session (QUIT answers only after
   * the release, so a reconnect after QUIT never does).
   */
  async dropLease(mailboxId: string, owner: string): Promise<void> {
    this.releasing.set(mailboxId, owner);
    try {
      await this.batcher.run({
        name: 'postern_lease_drop',
        text: 'delete from maildrop_leases where mailbox_id = $1 and owner = $2',
        values: [mailboxId, owner],
        mailboxId,
        rank: 0,
      });
    } catch {
      // left to expire
    } finally {
      if (this.releasing.get(mailboxId) === owner) this.releasing.delete(mailboxId);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('temp', 'store is closed');
  }
}
