/**
 * Delivery into the PostgreSQL store, in two steps:
 *
 * 1. The body is staged (spool.ts: in memory up to one chunk, else an unlinked temporary file) while it
 *    arrives, holding no database connection: a slow sender costs the database nothing.
 * 2. One short transaction publishes it: the chunks, then the mailbox row (order number, counts; its row lock
 *    orders concurrent deliveries to one mailbox for the instant of the commit), the quota check against the
 *    new counts, and the message row. Nothing is visible before COMMIT; a failure anywhere stores nothing.
 *    A body of one chunk (in memory) is one prepared INSERT; a larger one (in the spool file) goes in with one
 *    binary COPY from two reused buffers (copy-write.ts), so publishing allocates nothing per chunk.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type pg from 'pg';
import { type DeliverOptions, type DeliveryResult, QuotaExceededError, StorageError } from '../types.ts';
import { type CopyOut, CopyWrite } from './copy-write.ts';
import { inTransaction, pgError } from './pool.ts';
import { Spool } from './spool.ts';
import { COPY_HEADER, COPY_TRAILER } from './submittable.ts';

const COPY_CHUNKS = 'copy message_chunks (mailbox_id, message_id, seq, data) from stdin (format binary)';
/** Octets read from a spool file per CopyData message; two such buffers per delivery. */
const COPY_SLICE = 128 * 1024;

/** Stores `message` in `mailboxId` in chunks of `chunkSize` octets; resolves after COMMIT. */
export async function deliverMessage(
  pool: pg.Pool,
  chunkSize: number,
  mailboxId: string,
  message: Readable,
  options?: DeliverOptions,
): Promise<DeliveryResult> {
  let spool: Spool;
  try {
    spool = await Spool.fill(message, chunkSize);
  } catch (e) {
    if (e instanceof StorageError) throw e;
    // The sender went away, the message was refused upstream (size, quota), or the spool file failed (disk
    // full): nothing was stored, and none of it is final.
    throw new StorageError('temp', 'message stream failed', { cause: e });
  }
  try {
    return await inTransaction(pool, 'delivery', (c) => publish(c, spool, chunkSize, mailboxId, options));
  } catch (e) {
    if ((e as StorageError).cause && ((e as StorageError).cause as { code?: string }).code === '23505') {
      throw new StorageError('perm', `UIDL ${options?.uidl} exists in this mailbox`, { cause: e });
    }
    throw e instanceof StorageError ? e : pgError(e, 'delivery');
  } finally {
    await spool.close();
  }
}

/** The publishing transaction's statements (on `c`, inside BEGIN … COMMIT). */
async function publish(
  c: pg.PoolClient,
  spool: Spool,
  chunkSize: number,
  mailboxId: string,
  options: DeliverOptions | undefined,
): Promise<DeliveryResult> {
  const idRow = await c.query<{ id: string }>("select nextval('postern_message_id_seq')::text as id");
  const id = idRow.rows[0].id;
  let seq = 0;
  if (spool.inFile) {
    seq = Math.ceil(spool.rawSize / chunkSize);
    await copyChunks(c, spool, chunkSize, mailboxId, id);
  } else {
    // At most one chunk (the spool keeps no more in memory): one prepared INSERT, one round trip.
    for await (const data of spool.chunks(chunkSize)) {
      await c.query({
        name: 'postern_chunk_insert',
        text: 'insert into message_chunks (mailbox_id, message_id, seq, data) values ($1, $2, $3, $4)',
        values: [mailboxId, id, seq++, data],
      });
    }
  }
  const size = spool.size;
  const box = await c.query<{ ord: string; messages: string; bytes: string }>({
    name: 'postern_mailbox_add',
    text: `insert into mailboxes as m (mailbox_id, next_ord, messages, bytes) values ($1, 2, 1, $2)
           on conflict (mailbox_id) do update
             set next_ord = m.next_ord + 1, messages = m.messages + 1, bytes = m.bytes + excluded.bytes
           returning next_ord - 1 as ord, messages, bytes`,
    values: [mailboxId, size],
  });
  const { ord, messages, bytes } = box.rows[0];
  // The quota is checked against the counts this transaction is about to commit, under the mailbox row's
  // lock: concurrent deliveries cannot both squeeze in under the limit.
  const quota = options?.quota;
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
  await c.query({
    name: 'postern_message_insert',
    text: `insert into messages (mailbox_id, message_id, ord, uidl, size, raw_size, chunks)
           values ($1, $2, $3, $4, $5, $6, $7)`,
    values: [mailboxId, id, ord, uidl, size, spool.rawSize, seq],
  });
  return { id, size };
}

/**
 * The chunk rows of a body in a spool file, with one binary COPY (copy-write.ts): read from the file into two
 * buffers taken in turn, each refilled once the socket has sent it, so a message of any size passes through
 * 2 × COPY_SLICE octets of memory (INSERTs would allocate a Bind message per chunk).
 */
function copyChunks(c: pg.PoolClient, spool: Spool, chunkSize: number, mailboxId: string, id: string): Promise<void> {
  const mailbox = Buffer.from(mailboxId, 'utf8');
  const messageId = BigInt(id);
  const slice = Math.min(COPY_SLICE, chunkSize);
  const produce = async (out: CopyOut): Promise<void> => {
    void out.send(COPY_HEADER);
    const bufs = [Buffer.allocUnsafe(slice), Buffer.allocUnsafe(slice)];
    const sent = [Promise.resolve(), Promise.resolve()];
    let k = 0;
    for (let seq = 0, pos = 0; pos < spool.rawSize; seq++) {
      const length = Math.min(chunkSize, spool.rawSize - pos);
      void out.send(rowHeader(mailbox, messageId, seq, length));
      for (const end = pos + length; pos < end; k ^= 1) {
        await sent[k];
        if (out.failed) return;
        const n = await spool.read(bufs[k], pos, Math.min(slice, end - pos));
        sent[k] = out.send(bufs[k].subarray(0, n));
        pos += n;
      }
    }
    await Promise.all(sent);
    void out.send(COPY_TRAILER);
  };
  return new Promise<void>((resolve, reject) => {
    (c as unknown as CallbackQuery).query(new CopyWrite(COPY_CHUNKS, produce), (err) =>
      err ? reject(err) : resolve(),
    );
  });
}

/** `pg`'s callback form for a submittable (its types know only the promise form). */
interface CallbackQuery {
  query(q: CopyWrite, cb: (err: Error | null | undefined) => void): void;
}

/** A row of message_chunks up to its data: 4 fields, then mailbox_id, message_id, seq and the data's length. */
function rowHeader(mailbox: Buffer, messageId: bigint, seq: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(30 + mailbox.length);
  let p = b.writeInt16BE(4, 0);
  p = b.writeInt32BE(mailbox.length, p);
  p += mailbox.copy(b, p);
  p = b.writeInt32BE(8, p);
  p = b.writeBigInt64BE(messageId, p);
  p = b.writeInt32BE(4, p);
  p = b.writeInt32BE(seq, p);
  b.writeInt32BE(length, p);
  return b;
}
