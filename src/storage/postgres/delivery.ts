/**
 * Delivery into the PostgreSQL store, in two steps:
 *
 * 1. The body is staged (spool.ts: in memory up to one chunk, else an unlinked temporary file) while it
 *    arrives, holding no database connection: a slow sender costs the database nothing.
 * 2. One short transaction publishes it: the chunks, then the mailbox row (order number, counts; its row lock
 *    orders concurrent deliveries to one mailbox for the instant of the commit), the quota check against the
 *    new counts, and the message row. Nothing is visible before COMMIT; a failure anywhere stores nothing.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type pg from 'pg';
import { type DeliverOptions, type DeliveryResult, QuotaExceededError, StorageError } from '../types.ts';
import { inTransaction, pgError } from './pool.ts';
import { Spool } from './spool.ts';

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
  for await (const data of spool.chunks(chunkSize)) {
    await c.query({
      name: 'postern_chunk_insert',
      text: 'insert into message_chunks (mailbox_id, message_id, seq, data) values ($1, $2, $3, $4)',
      values: [mailboxId, id, seq++, data],
    });
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
