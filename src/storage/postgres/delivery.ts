/**
 * Delivery into the PostgreSQL store: one transaction holds the chunks, then the mailbox row (order number,
 * counts; its row lock orders concurrent deliveries to one mailbox for the instant of the commit), the quota
 * check against the new counts, and the message row. Nothing is visible before COMMIT; a failure anywhere
 * stores nothing.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type pg from 'pg';
import { SizeCounter } from '../../mail/size.ts';
import { type DeliverOptions, type DeliveryResult, QuotaExceededError, StorageError } from '../types.ts';
import { inTransaction } from './pool.ts';

/** Stores `message` in `mailboxId` in chunks of `chunkSize` octets; resolves after COMMIT. */
export async function deliverMessage(
  pool: pg.Pool,
  chunkSize: number,
  mailboxId: string,
  message: Readable,
  options?: DeliverOptions,
): Promise<DeliveryResult> {
  const quota = options?.quota;
  let streamFailed: unknown;
  return inTransaction(pool, 'delivery', async (c) => {
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
        while (pendingBytes >= chunkSize) {
          const all = pending.length === 1 ? pending[0] : Buffer.concat(pending);
          await insert(all.subarray(0, chunkSize));
          const rest = all.subarray(chunkSize);
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
}
