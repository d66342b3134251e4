/**
 * Local delivery for `postern fetch`: Maildir, mbox (mboxrd) or an external command (MDA), fed synchronously
 * with the bytes of each message as they arrive (already in the stored form, LF: the client converts CRLF while
 * dot-unstuffing), and made durable in groups.
 * design.md §5 rule 3 builds on that: the fetcher records the UIDLs of a group, and deletes on the server, only
 * once commit() has returned.
 *
 * The life of a group ("batch") of messages, driven by fetch/fetcher.ts:
 *   reserve(n)  where the next n messages will go (Maildir file names; the mbox offset); the fetcher journals
 *               these intents, fsynced, before any of them can become visible;
 *   begin/write/end, once per message, in arrival order (Maildir: a file in tmp/, written and fsynced at end;
 *               mbox: appended; MDA: spooled, then the command runs and end() waits for its exit status);
 *   commit()    makes the ended messages of the group durable and visible: Maildir renames them into new/ and
 *               fsyncs new/ once; mbox fsyncs the file once.
 * Crash recovery: `recover(intents)` tells which journaled deliveries completed, so a message is neither lost
 * nor delivered twice:
 * - Maildir: the rename into new/ is the commit point; the names are chosen beforehand and journaled.
 * - mbox: the size before the group is journaled; an append the journal does not confirm is cut off (under
 *   the lock) and redone.
 * - MDA: an external program cannot be asked, so a crash between its exit and the journal record can deliver a
 *   message twice (at least once, never lost), as with fetchmail and mpop. Its groups are of one message.
 */
import { MaildirDelivery } from './maildir-sink.ts';
import { MboxDelivery } from './mbox-sink.ts';
import { MdaDelivery } from './mda-sink.ts';

export type DeliveryTarget =
  | { kind: 'maildir'; path: string }
  | { kind: 'mbox'; path: string }
  | { kind: 'mda'; command: string };

/** What the journal keeps about a delivery in progress. */
export type Intent = { file?: string; offset?: number };

export interface DeliveryMeta {
  uidl: string;
  size: number;
  account: string;
}

export interface Delivery {
  readonly target: DeliveryTarget;
  /** Most messages per group (1 for an MDA: each run of the command is its own commit). */
  readonly maxGroup: number;
  describe(): string;
  /** Before the first message: directories made, locks taken (once per run, not per message). */
  prepare(): Promise<void>;
  /** Where the next `n` messages go, to be journaled before any of them is begun. */
  reserve(n: number): Intent[];
  /** Starts the message whose reserved intent is `intent`. */
  begin(intent: Intent, meta: DeliveryMeta): void;
  /** Bytes of the message in stored form (LF line endings: the client's decoder converted them). */
  write(chunk: Buffer): void;
  /** The message is complete and durable (not yet visible for Maildir); a promise for an MDA. */
  end(): void | Promise<void>;
  /** Drops the message being written, if any (a failure in the middle of it). */
  discard(): void;
  /** Makes the messages ended since the last commit durable and visible; returns how many. */
  commit(): number;
  /** After a crash: which of the journaled deliveries completed? Cleans up partial ones. */
  recover(intents: Intent[]): Promise<boolean[]>;
  /** Releases what prepare() took. Messages ended and not committed are dropped. */
  close(): Promise<void>;
}

export function createDelivery(target: DeliveryTarget): Delivery {
  switch (target.kind) {
    case 'maildir':
      return new MaildirDelivery(target);
    case 'mbox':
      return new MboxDelivery(target);
    case 'mda':
      return new MdaDelivery(target);
  }
}
