/**
 * A MailStore in PostgreSQL, shared by any number of Postern processes on any number of machines (schema:
 * schema.ts; connections: pool.ts).
 *
 * - Listing: a maildrop's snapshot is one index range scan of `messages` (uidl and size are columns); no
 *   body is read for STAT, LIST or UIDL.
 * - Bodies: stored in chunks of `chunkSize` octets; a delivery inserts each chunk as it arrives and a RETR
 *   reads one chunk per statement when the reader wants more, so a 100 MB message never sits in memory.
 * - Delivery: one transaction: the chunks, then the mailbox row (order number, counts; its row lock orders
 *   concurrent deliveries to one mailbox for the instant of the commit), the quota check against the new
 *   counts, and the message row. Nothing is visible before COMMIT; a failure anywhere stores nothing.
 * - The lock: a lease row (owner, expiry on the database clock) taken with one upsert that succeeds only when
 *   there is no row or it has expired, renewed every lease/3 while the maildrop lives. No connection is held
 *   between statements. A commit re-checks, under the lease row's lock and in the deleting transaction, that
 *   the lease is still ours and unexpired, so a holder that lost it (database unreachable past the expiry,
 *   taken over by another node) deletes nothing.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type pg from 'pg';
import { SizeCounter } from '../../mail/size.ts';
import {
  assertMailboxId,
  type DeliverOptions,
  type DeliveryResult,
  type MailboxStats,
  type Maildrop,
  type MaildropState,
  type MailStore,
  type MessageInfo,
  type OpenOptions,
  QuotaExceededError,
  StorageError,
} from '../types.ts';
import { createPgPool, inTransaction, type PgLogger, type PgSettings, pgError } from './pool.ts';
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
/** Small bodies fetched ahead per maildrop (readSmall): at most this many octets and messages at a time. */
const PREFETCH_BYTES = 512 * 1024;
const PREFETCH_MAX_MESSAGES = 64;
/** Messages up to this size (transmitted) are fetched ahead. */
const PREFETCH_SMALL = 128 * 1024;
/** The first batch: a client that retrieves one message pays at most this many small bodies more. */
const PREFETCH_FIRST_BATCH = 16;

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
      const r = await this.pool.query(
        lock
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
        lock ? [mailboxId, owner, this.leaseMs] : [mailboxId],
      );
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
    const quota = options?.quota;
    let streamFailed: unknown;
    const result = await inTransaction(this.pool, 'delivery', async (c) => {
      const idRow = await c.query<{ id: string }>("select nextval('postern_message_id_seq')::text as id");
      const id = idRow.rows[0].id;
      const counter = new SizeCounter();
      let rawSize = 0;
      let seq = 0;
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const insert = async (data: Buffer) => {
        await c.query('insert into message_chunks (mailbox_id, message_id, seq, data) values ($1, $2, $3, $4)', [
          mailboxId,
          id,
          seq++,
          data,
        ]);
      };
      try {
        for await (const chunk of message) {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk as Uint8Array);
          counter.update(buf);
          rawSize += buf.length;
          pending.push(buf);
          pendingBytes += buf.length;
          while (pendingBytes >= this.chunkSize) {
            const all = pending.length === 1 ? pending[0] : Buffer.concat(pending);
            await insert(all.subarray(0, this.chunkSize));
            const rest = all.subarray(this.chunkSize);
            pending = rest.length > 0 ? [rest] : [];
            pendingBytes = rest.length;
          }
        }
      } catch (e) {
        streamFailed = e;
        throw e;
      }
      if (pendingBytes > 0) await insert(Buffer.concat(pending));
      const size = counter.digest();
      const box = await c.query<{ ord: string; messages: string; bytes: string }>(
        `insert into mailboxes as m (mailbox_id, next_ord, messages, bytes) values ($1, 2, 1, $2)
         on conflict (mailbox_id) do update
           set next_ord = m.next_ord + 1, messages = m.messages + 1, bytes = m.bytes + excluded.bytes
         returning next_ord - 1 as ord, messages, bytes`,
        [mailboxId, size],
      );
      const { ord, messages, bytes } = box.rows[0];
      // The quota is checked against the counts this transaction is about to commit, under the mailbox
      // row's lock: concurrent deliveries cannot both squeeze in under the limit.
      if (quota) {
        if (quota.messages > 0 && Number(messages) > quota.messages) {
          throw new QuotaExceededError(`mailbox is full (${Number(messages) - 1} of ${quota.messages} messages)`);
        }
        if (quota.bytes > 0 && Number(bytes) > quota.bytes) {
          throw new QuotaExceededError(
            `message of ${size} octets does not fit (${Number(bytes) - size} of ${quota.bytes} octets used)`,
          );
        }
      }
      const uidl = options?.uidl ?? `${BigInt(id).toString(36)}.${randomBytes(4).toString('hex')}`;
      if (!/^[\x21-\x7e]{1,70}$/.test(uidl)) throw new StorageError('perm', `invalid UIDL ${JSON.stringify(uidl)}`);
      await c.query(
        `insert into messages (mailbox_id, message_id, ord, uidl, size, raw_size, chunks)
         values ($1, $2, $3, $4, $5, $6, $7)`,
        [mailboxId, id, ord, uidl, size, rawSize, seq],
      );
      return { id, size };
    }).catch((e: unknown) => {
      if ((e as StorageError).cause && ((e as StorageError).cause as { code?: string }).code === '23505') {
        throw new StorageError('perm', `UIDL ${options?.uidl} exists in this mailbox`, { cause: e });
      }
      if (streamFailed !== undefined && !(streamFailed instanceof StorageError)) {
        throw new StorageError('temp', 'message stream failed', { cause: streamFailed });
      }
      throw e;
    });
    return result;
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
      .query('delete from maildrop_leases where mailbox_id = $1 and owner = $2', [mailboxId, owner])
      .catch(() => {});
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('temp', 'store is closed');
  }
}

interface BodyRow {
  raw_size: string;
  chunks: number;
  data: Buffer | null;
}

export class PostgresMaildrop implements Maildrop {
  private released = false;
  /** Set when a renewal found the lease gone or expired: nothing may be committed any more. */
  private lost = false;
  private readonly ids: ReadonlySet<string>;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: PostgresStore,
    readonly mailboxId: string,
    readonly messages: readonly MessageInfo[],
    /** The lease owner string, or null for a maildrop opened with lock: false. */
    private readonly owner: string | null,
  ) {
    this.ids = new Set(messages.map((m) => m.id));
    if (owner !== null) {
      this.timer = setInterval(() => void this.renew(), Math.max(250, Math.floor(store.leaseMs / 3)));
      this.timer.unref();
    }
  }

  /** Extends the lease; a database error is retried at the next tick (the expiry is the safety net). */
  private async renew(): Promise<void> {
    if (this.released || this.lost || this.owner === null) return;
    try {
      const r = await this.store.pool.query(
        `update maildrop_leases set expires_at = now() + $3 * interval '1 millisecond'
         where mailbox_id = $1 and owner = $2 and expires_at > now()`,
        [this.mailboxId, this.owner, this.store.leaseMs],
      );
      if (r.rowCount === 0) this.lost = true;
    } catch {
      // retried at the next tick
    }
  }

  /** The message row and its first chunk in one round trip; notfound when it is not (or no longer) there. */
  private async head(id: string): Promise<BodyRow> {
    this.assertUsable();
    if (!this.ids.has(id)) throw new StorageError('notfound', 'no such message');
    let r: pg.QueryResult<BodyRow>;
    try {
      r = await this.store.pool.query<BodyRow>(
        `select m.raw_size, m.chunks, c.data from messages m
           left join message_chunks c on c.mailbox_id = m.mailbox_id and c.message_id = m.message_id and c.seq = 0
         where m.mailbox_id = $1 and m.message_id = $2`,
        [this.mailboxId, id],
      );
    } catch (e) {
      throw pgError(e, 'read');
    }
    const row = r.rows[0];
    if (!row) throw new StorageError('notfound', 'no such message');
    return row;
  }

  async open(id: string): Promise<Readable> {
    const row = await this.head(id);
    const { pool } = this.store;
    const mailboxId = this.mailboxId;
    const total = row.chunks;
    const first = row.data;
    // One chunk per statement, fetched when the consumer asks for more: memory stays at about one chunk.
    async function* chunks(): AsyncGenerator<Buffer> {
      if (total === 0) return;
      if (first === null) throw new StorageError('notfound', 'message removed while being read');
      yield first;
      for (let seq = 1; seq < total; seq++) {
        let r: pg.QueryResult<{ data: Buffer }>;
        try {
          r = await pool.query<{ data: Buffer }>(
            'select data from message_chunks where mailbox_id = $1 and message_id = $2 and seq = $3',
            [mailboxId, id, seq],
          );
        } catch (e) {
          throw pgError(e, 'read');
        }
        if (r.rows.length === 0) throw new StorageError('notfound', 'message removed while being read');
        yield r.rows[0].data;
      }
    }
    return Readable.from(chunks(), { objectMode: false, highWaterMark: 1 });
  }

  /**
   * Small bodies fetched ahead for the RETRs that usually follow (a client downloading its mailbox asks for
   * 1, 2, 3, …): one round trip serves a run of messages. Bounded by PREFETCH_BYTES per maildrop; the batch
   * grows (16, 32, 64 messages) only while the client keeps reading in order.
   */
  private readonly prefetched = new Map<string, Buffer>();
  private nextBatch = PREFETCH_FIRST_BATCH;

  async readSmall(id: string, maxBytes: number): Promise<Buffer | null> {
    this.assertUsable();
    const hit = this.prefetched.get(id);
    if (hit !== undefined) {
      this.prefetched.delete(id);
      return hit.length <= maxBytes ? hit : null;
    }
    if (!this.ids.has(id)) throw new StorageError('notfound', 'no such message');
    this.prefetched.clear();
    const batch = this.batchFrom(id, maxBytes);
    if (batch.length > 1) {
      let r: pg.QueryResult<{ message_id: string; raw_size: string; chunks: number; data: Buffer | null }>;
      try {
        r = await this.store.pool.query(
          `select m.message_id::text, m.raw_size, m.chunks, c.data from messages m
             left join message_chunks c on c.mailbox_id = m.mailbox_id and c.message_id = m.message_id and c.seq = 0
           where m.mailbox_id = $1 and m.message_id = any($2::bigint[])`,
          [this.mailboxId, batch],
        );
      } catch (e) {
        throw pgError(e, 'read');
      }
      this.nextBatch = Math.min(PREFETCH_MAX_MESSAGES, this.nextBatch * 2);
      let mine: Buffer | null | undefined;
      for (const row of r.rows) {
        const body = row.chunks === 0 ? Buffer.alloc(0) : row.chunks === 1 ? row.data : null;
        if (row.message_id === id) mine = body !== null && body.length <= maxBytes ? body : null;
        else if (body !== null) this.prefetched.set(row.message_id, body);
      }
      if (mine === undefined) throw new StorageError('notfound', 'no such message');
      if (mine !== null) return mine;
    } else {
      this.nextBatch = Math.min(PREFETCH_MAX_MESSAGES, this.nextBatch * 2);
    }
    return this.readSmallOne(id, maxBytes);
  }

  /** `id` and the messages after it in the snapshot, while they fit the batch and PREFETCH_BYTES. */
  private batchFrom(id: string, maxBytes: number): string[] {
    const start = this.messages.findIndex((m) => m.id === id);
    const out = [id];
    let bytes = this.messages[start]?.size ?? 0;
    for (let i = start + 1; i < this.messages.length && out.length < this.nextBatch; i++) {
      const m = this.messages[i];
      // The caller's limit is this message's size; the others count as small up to PREFETCH_SMALL.
      if (m.size > Math.max(maxBytes, PREFETCH_SMALL)) continue;
      if (bytes + m.size > PREFETCH_BYTES) break;
      bytes += m.size;
      out.push(m.id);
    }
    return out;
  }

  private async readSmallOne(id: string, maxBytes: number): Promise<Buffer | null> {
    const row = await this.head(id);
    if (Number(row.raw_size) > maxBytes) return null;
    if (row.chunks === 0) return Buffer.alloc(0);
    if (row.chunks === 1 && row.data !== null) return row.data;
    try {
      const r = await this.store.pool.query<{ data: Buffer }>(
        'select data from message_chunks where mailbox_id = $1 and message_id = $2 order by seq',
        [this.mailboxId, id],
      );
      if (r.rows.length !== row.chunks) throw new StorageError('notfound', 'message removed while being read');
      return Buffer.concat(r.rows.map((x) => x.data));
    } catch (e) {
      throw pgError(e, 'read');
    }
  }

  async commit(deletedIds: readonly string[]): Promise<void> {
    this.assertUsable();
    if (this.lost) throw new StorageError('temp', 'maildrop lock lost (lease expired); nothing deleted');
    const ids = [...new Set(deletedIds.filter((id) => this.ids.has(id)))];
    // Nothing to delete: nothing to commit, and no round trip (the QUIT of a polling client).
    if (ids.length === 0) return;
    this.prefetched.clear();
    await inTransaction(this.store.pool, 'commit', async (c) => {
      if (this.owner !== null) {
        const lease = await c.query(
          'select 1 from maildrop_leases where mailbox_id = $1 and owner = $2 and expires_at > now() for update',
          [this.mailboxId, this.owner],
        );
        if (lease.rowCount !== 1) {
          this.lost = true;
          throw new StorageError('temp', 'maildrop lock lost (lease expired); nothing deleted');
        }
      }
      const gone = await c.query<{ n: string; bytes: string | null }>(
        `with d as (delete from messages where mailbox_id = $1 and message_id = any($2::bigint[]) returning size)
         select count(*)::text as n, sum(size)::text as bytes from d`,
        [this.mailboxId, ids],
      );
      await c.query('delete from message_chunks where mailbox_id = $1 and message_id = any($2::bigint[])', [
        this.mailboxId,
        ids,
      ]);
      const n = Number(gone.rows[0].n);
      if (n > 0) {
        await c.query('update mailboxes set messages = messages - $2, bytes = bytes - $3 where mailbox_id = $1', [
          this.mailboxId,
          n,
          Number(gone.rows[0].bytes ?? 0),
        ]);
      }
    });
  }

  async readState(): Promise<MaildropState> {
    this.assertUsable();
    try {
      const r = await this.store.pool.query<{ state: MaildropState }>(
        'select state from mailboxes where mailbox_id = $1',
        [this.mailboxId],
      );
      return r.rows[0]?.state ?? {};
    } catch (e) {
      throw pgError(e, 'state');
    }
  }

  async writeState(state: MaildropState): Promise<void> {
    this.assertUsable();
    try {
      await this.store.pool.query(
        `insert into mailboxes (mailbox_id, state) values ($1, $2)
         on conflict (mailbox_id) do update set state = excluded.state`,
        [this.mailboxId, JSON.stringify(state)],
      );
    } catch (e) {
      throw pgError(e, 'state');
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.prefetched.clear();
    if (this.timer) clearInterval(this.timer);
    this.store.forget(this);
    if (this.owner !== null && !this.lost) await this.store.dropLease(this.mailboxId, this.owner);
  }

  private assertUsable(): void {
    if (this.released) throw new StorageError('temp', 'maildrop was released');
  }
}
