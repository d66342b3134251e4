/**
 * A maildrop of the PostgreSQL store: the snapshot taken at login, bodies read in chunks (or small ones
 * fetched ahead in batches), the lease renewed while it lives, and QUIT's deletions in one transaction that
 * first checks, under the lease row's lock, that the lease is still ours and unexpired, so a holder that lost
 * it (database unreachable past the expiry, taken over by another node) deletes nothing.
 */
import { Readable } from 'node:stream';
import pg from 'pg';
import { type Maildrop, type MaildropState, type MessageInfo, StorageError } from '../types.ts';
import { CopyRead } from './copy-read.ts';
import { pgError } from './pool.ts';

const { escapeLiteral } = pg;

/** Small bodies fetched ahead per maildrop (readSmall): at most this many octets and messages at a time. */
const PREFETCH_BYTES = 512 * 1024;
const PREFETCH_MAX_MESSAGES = 64;
/** Messages up to this size (transmitted) are fetched ahead. */
const PREFETCH_SMALL = 128 * 1024;
/** The first batch: a client that retrieves one message pays at most this many small bodies more. */
const PREFETCH_FIRST_BATCH = 32;

/**
 * QUIT's deletions as one statement: with `leased`, only while the lease row (locked for the statement) is
 * still ours and unexpired; `leased` in the result is 1 when it was (always 1 without a lock).
 */
function commitSql(leased: boolean): string {
  return `with lease as (${
    leased
      ? 'select 1 from maildrop_leases where mailbox_id = $1 and owner = $3 and expires_at > now() for update'
      : 'select 1'
  }),
  d as (delete from messages where mailbox_id = $1 and message_id = any($2::bigint[]) and exists (select 1 from lease)
        returning message_id, size),
  c as (delete from message_chunks where mailbox_id = $1 and message_id in (select message_id from d)),
  u as (update mailboxes b set messages = b.messages - g.n, bytes = b.bytes - g.octets
          from (select count(*) as n, coalesce(sum(size), 0) as octets from d) g
        where b.mailbox_id = $1 and g.n > 0)
  select (select count(*) from lease)::int as leased, (select count(*) from d)::int as n`;
}

/**
 * The octets of `encode(data, 'escape')`: every octet as the character of that code, except a backslash
 * (`\\`), a zero octet and octets with the high bit set (`\nnn`, octal). Small bodies are fetched in this form
 * rather than as bytea, which `pg` gets in hex: mail is mostly ASCII, so the text is about as long as the
 * body (hex: twice), cheaper for the database to send and for us to decode (a latin1 copy per run between
 * backslashes).
 */
export function unescapeBytea(s: string): Buffer {
  let at = s.indexOf('\\');
  if (at < 0) return Buffer.from(s, 'latin1');
  const out = Buffer.allocUnsafe(s.length); // never longer than its text
  let n = 0;
  let from = 0;
  while (at >= 0) {
    n += out.write(s.substring(from, at), n, 'latin1');
    if (s.charCodeAt(at + 1) === 92) {
      out[n++] = 92;
      from = at + 2;
    } else {
      const d = (i: number) => {
        const c = s.charCodeAt(at + i) - 48;
        if (!(c >= 0 && c <= 7)) throw new StorageError('temp', 'read: malformed escaped body from the database');
        return c;
      };
      out[n++] = (d(1) << 6) | (d(2) << 3) | d(3);
      from = at + 4;
    }
    at = s.indexOf('\\', from);
  }
  n += out.write(s.substring(from), n, 'latin1');
  return out.subarray(0, n);
}

/** Bodies of more than one chunk are read in slices of this many octets (see open()). */
const READ_SLICE = 32 * 1024;
/** The slices of one stored chunk, for COPY (which takes no parameters: the literals are checked here). */
function chunkSql(mailboxId: string, id: string, seq: number): string {
  if (!/^\d{1,19}$/.test(id) || !Number.isSafeInteger(seq)) throw new StorageError('notfound', 'no such message');
  return `select substring(c.data from g.o for ${READ_SLICE})
    from message_chunks c, generate_series(1, length(c.data), ${READ_SLICE}) as g(o)
    where c.mailbox_id = ${escapeLiteral(mailboxId)} and c.message_id = ${id} and c.seq = ${seq} order by g.o`;
}
/** pg-pool's callback form, which takes a submittable (its typings only know the promise form for it). */
interface CallbackQuery {
  query(q: CopyRead, cb: (err: Error | null | undefined, rows?: Buffer[]) => void): void;
}
const EMPTY = Buffer.alloc(0);

/** What a maildrop needs of its store. */
export interface MaildropHost {
  readonly pool: pg.Pool;
  readonly leaseMs: number;
  /** The maildrop is done; `inOrder` messages were retrieved in order from the first (the next login's read-ahead). */
  forget(drop: PostgresMaildrop, inOrder: number): void;
  dropLease(mailboxId: string, owner: string): Promise<void>;
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
    private readonly store: MaildropHost,
    readonly mailboxId: string,
    readonly messages: readonly MessageInfo[],
    /** The lease owner string, or null for a maildrop opened with lock: false. */
    private readonly owner: string | null,
    /** Bodies read ahead with the login (small messages at the start of the mailbox). */
    bodies?: ReadonlyMap<string, Buffer>,
  ) {
    this.ids = new Set(messages.map((m) => m.id));
    if (bodies) for (const [id, body] of bodies) this.prefetched.set(id, body);
    if (owner !== null) {
      this.timer = setInterval(() => void this.renew(), Math.max(250, Math.floor(store.leaseMs / 3)));
      this.timer.unref();
    }
  }

  /** Extends the lease; a database error is retried at the next tick (the expiry is the safety net). */
  private async renew(): Promise<void> {
    if (this.released || this.lost || this.owner === null) return;
    try {
      const r = await this.store.pool.query({
        name: 'postern_lease_renew',
        text: `update maildrop_leases set expires_at = now() + $3 * interval '1 millisecond'
               where mailbox_id = $1 and owner = $2 and expires_at > now()`,
        values: [this.mailboxId, this.owner, this.store.leaseMs],
      });
      if (r.rowCount === 0) this.lost = true;
    } catch {
      // retried at the next tick
    }
  }

  /** The message row, with the body when it is one chunk, in one round trip; notfound when it is not there. */
  private async head(id: string): Promise<BodyRow> {
    this.assertUsable();
    if (!this.ids.has(id)) throw new StorageError('notfound', 'no such message');
    let r: pg.QueryResult<BodyRow>;
    try {
      r = await this.store.pool.query<BodyRow>({
        name: 'postern_head',
        text: `select m.raw_size, m.chunks, c.data from messages m
                 left join message_chunks c
                   on c.mailbox_id = m.mailbox_id and c.message_id = m.message_id and c.seq = 0 and m.chunks = 1
               where m.mailbox_id = $1 and m.message_id = $2`,
        values: [this.mailboxId, id],
      });
    } catch (e) {
      throw pgError(e, 'read');
    }
    const row = r.rows[0];
    if (!row) throw new StorageError('notfound', 'no such message');
    return row;
  }

  /** Messages retrieved so far in order from the first (the next login reads that many ahead). */
  private inOrder = 0;
  private retrieving(id: string): void {
    if (this.messages[this.inOrder]?.id === id) this.inOrder++;
  }

  async open(id: string): Promise<Readable> {
    const row = await this.head(id);
    this.retrieving(id);
    const { pool } = this.store;
    const mailboxId = this.mailboxId;
    const total = row.chunks;
    const only = row.data;
    const read = async (seq: number): Promise<Buffer[]> => {
      let rows: Buffer[];
      try {
        rows = await new Promise<Buffer[]>((resolve, reject) => {
          const copy = new CopyRead(chunkSql(mailboxId, id, seq));
          (pool as unknown as CallbackQuery).query(copy, (err, r) => (err ? reject(err) : resolve(r ?? [])));
        });
      } catch (e) {
        throw pgError(e, 'read');
      }
      if (rows.length === 0) throw new StorageError('notfound', 'message removed while being read');
      return rows;
    };
    // A one-chunk message came with its row. Larger ones: one COPY per stored chunk (raw octets, not hex:
    // copy-read.ts), the next one asked for while this one is passed on (at most two chunks in hand), each
    // as slices of READ_SLICE octets so that no protocol message or buffer of the driver is larger.
    async function* chunks(): AsyncGenerator<Buffer> {
      if (total === 0) return;
      if (total === 1) {
        if (only === null) throw new StorageError('notfound', 'message removed while being read');
        yield only;
        return;
      }
      let next: Promise<Buffer[]> | undefined = read(0);
      for (let seq = 0; next !== undefined; seq++) {
        const pieces: Buffer[] = await next;
        next = seq + 1 < total ? read(seq + 1) : undefined;
        // A consumer that stops early leaves the read ahead unawaited: its failure is of no interest then.
        next?.catch(() => {});
        for (let k = 0; k < pieces.length; k++) {
          const piece = pieces[k];
          pieces[k] = EMPTY; // passed on: not kept alive by this array
          yield piece;
        }
      }
    }
    return Readable.from(chunks(), { objectMode: false, highWaterMark: 1 });
  }

  /**
   * Small bodies fetched ahead for the RETRs that usually follow (a client downloading its mailbox asks for
   * 1, 2, 3, …): one round trip serves a run of messages. Bounded by PREFETCH_BYTES per maildrop; the batch
   * grows (32, 64 messages) only while the client keeps reading in order.
   */
  private readonly prefetched = new Map<string, Buffer>();
  private nextBatch = PREFETCH_FIRST_BATCH;

  async readSmall(id: string, maxBytes: number): Promise<Buffer | null> {
    this.assertUsable();
    const hit = this.prefetched.get(id);
    if (hit !== undefined) {
      this.prefetched.delete(id);
      this.retrieving(id);
      return hit.length <= maxBytes ? hit : null;
    }
    if (!this.ids.has(id)) throw new StorageError('notfound', 'no such message');
    this.prefetched.clear();
    const batch = this.batchFrom(id, maxBytes);
    if (batch.length > 1) {
      let r: pg.QueryResult<{ message_id: string; raw_size: string; chunks: number; data: string | null }>;
      try {
        r = await this.store.pool.query({
          name: 'postern_prefetch',
          text: `select m.message_id::text, m.raw_size, m.chunks, encode(c.data, 'escape') as data from messages m
                   left join message_chunks c
                     on c.mailbox_id = m.mailbox_id and c.message_id = m.message_id and c.seq = 0 and m.chunks = 1
                 where m.mailbox_id = $1 and m.message_id = any($2::bigint[])`,
          values: [this.mailboxId, batch],
        });
      } catch (e) {
        throw pgError(e, 'read');
      }
      this.nextBatch = Math.min(PREFETCH_MAX_MESSAGES, this.nextBatch * 2);
      let mine: Buffer | null | undefined;
      for (const row of r.rows) {
        const body =
          row.chunks === 0 ? Buffer.alloc(0) : row.chunks === 1 && row.data !== null ? unescapeBytea(row.data) : null;
        if (row.message_id === id) mine = body !== null && body.length <= maxBytes ? body : null;
        else if (body !== null) this.prefetched.set(row.message_id, body);
      }
      if (mine === undefined) throw new StorageError('notfound', 'no such message');
      if (mine !== null) {
        this.retrieving(id);
        return mine;
      }
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
    this.retrieving(id);
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
    // One statement, so one implicit transaction and one round trip: the lease checked under its row's lock
    // (a holder that lost it deletes nothing), the messages, their chunks and the mailbox counts.
    let r: pg.QueryResult<{ leased: number; n: number }>;
    try {
      r = await this.store.pool.query<{ leased: number; n: number }>(
        this.owner === null
          ? { name: 'postern_commit_unlocked', text: commitSql(false), values: [this.mailboxId, ids] }
          : { name: 'postern_commit', text: commitSql(true), values: [this.mailboxId, ids, this.owner] },
      );
    } catch (e) {
      throw pgError(e, 'commit');
    }
    if (r.rows[0]?.leased !== 1) {
      this.lost = true;
      throw new StorageError('temp', 'maildrop lock lost (lease expired); nothing deleted');
    }
  }

  async readState(): Promise<MaildropState> {
    this.assertUsable();
    try {
      const r = await this.store.pool.query<{ state: MaildropState }>({
        name: 'postern_state_read',
        text: 'select state from mailboxes where mailbox_id = $1',
        values: [this.mailboxId],
      });
      return r.rows[0]?.state ?? {};
    } catch (e) {
      throw pgError(e, 'state');
    }
  }

  async writeState(state: MaildropState): Promise<void> {
    this.assertUsable();
    try {
      await this.store.pool.query({
        name: 'postern_state_write',
        text: `insert into mailboxes (mailbox_id, state) values ($1, $2)
               on conflict (mailbox_id) do update set state = excluded.state`,
        values: [this.mailboxId, JSON.stringify(state)],
      });
    } catch (e) {
      throw pgError(e, 'state');
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.prefetched.clear();
    if (this.timer) clearInterval(this.timer);
    this.store.forget(this, this.inOrder);
    if (this.owner !== null && !this.lost) await this.store.dropLease(this.mailboxId, this.owner);
  }

  private assertUsable(): void {
    if (this.released) throw new StorageError('temp', 'maildrop was released');
  }
}
