/**
 * Mailbox quotas: a limit on octets (as transmitted, the size POP3 reports) and one on the message count, each
 * 0 for none. The defaults come from `[quota]`; a user's line in the users file may override them with the
 * extra fields `quota_bytes=SIZE` and `quota_messages=N` (SIZE takes a K, M, G or T suffix, powers of 1024, as
 * Dovecot's quota rules do; 0 lifts the limit for that user).
 *
 * Enforced at delivery, in three steps: before the message is read (RCPT in LMTP: the mailbox is already full,
 * or the size the client declared with SIZE= will not fit), while it streams (QuotaLimiter stops the copy the
 * moment it goes over, so an over-quota message is never written in full), and by the store when it publishes
 * the copy (DeliverOptions.quota): the Maildir store counts the usage and publishes under the mailbox's
 * delivery lock, PostgreSQL in the inserting transaction. The first two see the usage before concurrent
 * deliveries; the last one settles who fits, so the limit holds across recipients, processes and machines.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { UserSettings } from '../auth/user-settings.ts';
import { SizeCounter } from '../mail/size.ts';
import { type MailboxStats, type Quota, type QuotaSource, StorageError } from '../storage/types.ts';

export const NO_QUOTA: Quota = Object.freeze({ bytes: 0, messages: 0 });

export function hasLimit(q: Quota): boolean {
  return q.bytes > 0 || q.messages > 0;
}

/** A user's quota: their own limits (parsed settings, auth/user-settings.ts) where set, else the defaults. */
export function userQuota(settings: UserSettings | undefined, defaults: Quota): Quota {
  return { bytes: settings?.quota?.bytes ?? defaults.bytes, messages: settings?.quota?.messages ?? defaults.messages };
}

/** Where delivery learns each user's quota. */
/** The same quota for everyone. */
export class FixedQuota implements QuotaSource {
  constructor(private readonly quota: Quota) {}
  async quotaOf(): Promise<Quota> {
    return this.quota;
  }
}

/**
 * Why a mailbox cannot take a message of `incomingBytes` (0 when unknown) now, or null when it can. The
 * message-count limit refuses the message that would go beyond it; the size limit refuses a mailbox that
 * is already at or over it, or a message declared too large for what is left.
 */
export function quotaRefusal(usage: MailboxStats, quota: Quota, incomingBytes = 0): string | null {
  if (quota.messages > 0 && usage.messages + 1 > quota.messages) {
    return `mailbox is full (${usage.messages} of ${quota.messages} messages)`;
  }
  if (quota.bytes > 0 && (usage.bytes >= quota.bytes || usage.bytes + incomingBytes > quota.bytes)) {
    return incomingBytes > 0 && usage.bytes < quota.bytes
      ? `message of ${incomingBytes} octets does not fit (${usage.bytes} of ${quota.bytes} used)`
      : `mailbox is full (${usage.bytes} of ${quota.bytes} octets)`;
  }
  return null;
}

/**
 * Passes the message through while counting its transmitted size (CRLF line endings, as the store counts it);
 * fails with StorageError('quota') as soon as it exceeds `maxBytes`, so the store abandons the copy.
 */
export class QuotaLimiter extends Transform {
  private readonly counter = new SizeCounter();
  /** Set when the limit was hit (the store may wrap the error; this says what really happened). */
  exceeded = false;

  constructor(readonly maxBytes: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.counter.update(chunk);
    // The digest may still add a final line ending; without it the count is a lower bound, safe to refuse on.
    if (this.counter.digest() - 2 > this.maxBytes) {
      this.exceeded = true;
      callback(new StorageError('quota', 'message exceeds the quota'));
      return;
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.counter.digest() > this.maxBytes) {
      this.exceeded = true;
      callback(new StorageError('quota', 'message exceeds the quota'));
      return;
    }
    callback();
  }
}
