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
import { deliverMessage } from './delivery.ts';
import { PostgresMaildrop } from './maildrop.ts';
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

export class PostgresStore implements MailStore {
  readonly pool: pg.Pool;
  readonly leaseMs: number;
  readonly chunkSize: number;
  private readonly ownsPool: boolean;
  private readonly drops = new Set<PostgresMaildrop>();
  /** Identifies this process in lease rows (for an operator reading the table). */
  readonly nodeId = `${process.pid}-${randomBytes(4).toString('hex')}`;
  private closed = false;

  constructor(options: PostgresStoreOptions = {}) {
    this.ownsPool = options.pool === undefined;
    this.pool = options.pool ?? createPgPool(options, options.logger);
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
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
    // taken; the messages follow, read only when it was.
    let rows: { k: number; got: string | null; message_id: string; uidl: string; size: string }[];
    try {
      const r = await this.pool.query({
        name: lock ? 'postern_login' : 'postern_listing',
        text: lock
          ? `with l as (
               insert into maildrop_leases (mailbox_id, owner, expires_at)
                 values ($1, $2, now() + $3 * interval '1 millisecond')
               on conflict (mailbox_id) do update set owner = excluded.owner, expires_at = excluded.expires_at
                 where maildrop_leases.expires_at < now()
               returning owner)
             select 0 as k, (select count(*) from l)::text as got, null as message_id, null as uidl, null as size, 0::bigint as ord
             union all
             (select 1, null, m.message_id::text, m.uidl, m.size::text, m.ord from messages m
               where m.mailbox_id = $1 and exists (select 1 from l))
             order by k, ord`
          : `select 1 as k, null as got, message_id::text, uidl, size::text from messages
             where mailbox_id = $1 order by ord`,
        values: lock ? [mailboxId, owner, this.leaseMs] : [mailboxId],
      });
      rows = r.rows;
    } catch (e) {
      throw pgError(e, 'login');
    }
    if (lock && rows[0]?.got !== '1') throw new StorageError('inuse', 'maildrop is locked by another session');
    const messages: MessageInfo[] = [];
    for (const row of rows) {
      if (row.k === 1) messages.push(Object.freeze({ id: row.message_id, uidl: row.uidl, size: Number(row.size) }));
    }
    const drop = new PostgresMaildrop(this, mailboxId, Object.freeze(messages), owner);
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

  /** @internal */
  forget(drop: PostgresMaildrop): void {
    this.drops.delete(drop);
  }

  /** @internal Drops a lease if it is still ours; a failure leaves it to expire. */
  async dropLease(mailboxId: string, owner: string): Promise<void> {
    await this.pool
      .query({
        name: 'postern_lease_drop',
        text: 'delete from maildrop_leases where mailbox_id = $1 and owner = $2',
        values: [mailboxId, owner],
      })
      .catch(() => {});
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('temp', 'store is closed');
  }
}
