/**
 * The storing side of a fetch run (fetcher.ts has the order of its steps): the bodies of the pipelined RETR
 * replies go to the local delivery as they arrive, in groups made durable together:
 *   journal "pending" for the group (one write, one fsync) → each message written and fsynced → the group made
 *   visible (Maildir: renames + one directory fsync) → journal "done" (one write, one fsync) → the fetcher's
 *   `committed` callback, which sends DELE for the group's messages when deleting.
 * A message is thus marked for deletion only once its copy and its record are durable. A body larger than the
 * account's max_size, or far larger than its listed size, is not stored (a hostile server cannot fill the disk).
 */
import { hostname } from 'node:os';
import { Pop3ProtocolError } from '../client/errors.ts';
import type { RetrieveSink } from '../client/pipeline.ts';
import type { FetchAccount } from './config.ts';
import type { Delivery, Intent } from './deliver.ts';
import type { Progress } from './progress.ts';
import type { UidlState } from './state.ts';

export type Listed = { number: number; uidl: string; size: number };

/** A group is closed at this many messages or once its listed sizes reach GROUP_BYTES (a message at least). */
const GROUP_BYTES = 16 * 1024 * 1024;
/**
 * How far a body may exceed its listed size: servers that list sizes with LF line endings undercount by one
 * octet per line, so up to twice (a message of empty lines) plus some slack is honest; more is a protocol error.
 */
const SIZE_SLACK = 64 * 1024;

/** The stored copy would grow past what the account or the listing allows. */
export class MessageTooLargeError extends Pop3ProtocolError {
  override name = 'MessageTooLargeError';
}

/**
 * Receives the pipelined RETR replies (RetrieveSink) and stores them in groups, as described at the top. Runs
 * synchronously inside the connection's read loop (an MDA's end() is the only wait), so a group's commit, its
 * journal record and its DELEs happen before the next reply is read.
 */
export class GroupSink implements RetrieveSink {
  private groupStart = 0;
  private groupEnd = 0;
  private intents: Intent[] = [];
  /** Index (into the list) of the message being written, or -1. */
  private current = -1;
  /** Ended in the current group, not yet committed. */
  private ended: Listed[] = [];
  private received = 0;
  private limit = 0;
  private readonly received_header: string | undefined;

  constructor(
    private readonly account: FetchAccount,
    private readonly list: readonly Listed[],
    private readonly delivery: Delivery,
    private readonly state: UidlState,
    private readonly progress: Progress,
    private readonly now: () => number,
    private readonly committed: (group: Listed[]) => void,
  ) {
    this.received_header = account.receivedHeader ? receivedPrefix(account) : undefined;
  }

  /** Bodies come in the stored form (LF), converted by the client's decoder in its one pass over the bytes. */
  readonly crlfToLf = true;

  /** The first error raised while storing (a full disk, an MDA's failure), as it was raised. */
  failure: unknown;

  begin(index: number): void {
    try {
      this.begin_(index);
    } catch (err) {
      throw this.fail(err);
    }
  }

  data(chunk: Buffer, index: number): void {
    try {
      this.data_(chunk, index);
    } catch (err) {
      throw this.fail(err);
    }
  }

  end(index: number): void | Promise<void> {
    try {
      const r = this.delivery.end();
      if (r)
        return r.then(
          () => this.ended_(index),
          (err: unknown) => {
            throw this.fail(err);
          },
        );
      this.ended_(index);
    } catch (err) {
      throw this.fail(err);
    }
  }

  private fail(err: unknown): unknown {
    this.failure ??= err;
    return err;
  }

  private begin_(index: number): void {
    if (index >= this.groupEnd) this.openGroup(index);
    const m = this.list[index];
    this.current = index;
    this.received = 0;
    const byListing = m.size * 2 + SIZE_SLACK;
    this.limit = this.account.maxSize === undefined ? byListing : Math.min(byListing, this.account.maxSize);
    this.delivery.begin(this.intents[index - this.groupStart], {
      uidl: m.uidl,
      size: m.size,
      account: this.account.name,
    });
    if (this.received_header) {
      this.delivery.write(Buffer.from(`${this.received_header} id ${m.uidl}; ${rfc5322Date(new Date())}\n`));
    }
  }

  private data_(chunk: Buffer, index: number): void {
    this.received += chunk.length;
    if (this.received > this.limit) {
      const m = this.list[index];
      const why =
        this.account.maxSize !== undefined && this.limit === this.account.maxSize
          ? `max_size (${this.account.maxSize} octets)`
          : `far more than its listed size of ${m.size} octets`;
      throw new MessageTooLargeError(`message ${m.number} (${m.uidl}) is larger than ${why}: not stored`);
    }
    this.delivery.write(chunk);
    this.progress.bytes?.(this.account.name, chunk.length);
  }

  /** After the last reply or a failure: drop a partial message, commit the complete ones, forget the rest. */
  salvage(): void {
    if (this.current !== -1) {
      this.delivery.discard();
      this.current = -1;
    }
    this.commitGroup();
  }

  private ended_(index: number): void {
    this.current = -1;
    const m = this.list[index];
    this.ended.push(m);
    this.progress.message(this.account.name, m);
    if (index === this.groupEnd - 1) this.commitGroup();
  }

  private openGroup(index: number): void {
    let end = index;
    let bytes = 0;
    while (end < this.list.length && end - index < this.delivery.maxGroup && (end === index || bytes < GROUP_BYTES)) {
      bytes += this.list[end].size;
      end++;
    }
    this.groupStart = index;
    this.groupEnd = end;
    this.intents = this.delivery.reserve(end - index);
    // Journaled before any message of the group can become visible: a crash is then always recoverable.
    this.state.beginMany(
      this.list.slice(index, end).map((m) => m.uidl),
      this.intents,
    );
  }

  /** The group's complete messages made durable and visible, then recorded; the rest of it abandoned. */
  private commitGroup(): void {
    if (this.groupEnd === this.groupStart) return;
    const done = this.ended;
    this.ended = [];
    this.delivery.commit();
    const doneSet = new Set(done);
    const abandoned = this.list.slice(this.groupStart, this.groupEnd).filter((m) => !doneSet.has(m));
    this.state.settle(
      done.map((m) => m.uidl),
      this.now(),
      abandoned.map((m) => m.uidl),
    );
    this.groupStart = this.groupEnd;
    if (done.length > 0) this.committed(done);
  }
}

let localHost: string | undefined;

/** "Received: from HOST by LOCAL with POP3[S] (postern fetch)", completed per message with its id and date. */
function receivedPrefix(account: FetchAccount): string {
  localHost ??= hostname();
  const proto = account.tls === 'none' ? 'POP3' : 'POP3S';
  return `Received: from ${account.host} by ${localHost} with ${proto} (postern fetch, account ${account.name})`;
}

/** RFC 5322 §3.3 date-time in UTC. */
export function rfc5322Date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}
