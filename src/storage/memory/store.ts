/**
 * A complete in-memory MailStore for tests of the server and of delivery: same contract and conformance suite
 * as the Maildir store, plus knobs to make each operation fail or stall (go-imap's imapmemserver and go-smtp's
 * test backend do the same), a way to seed messages and a way to look inside.
 */
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { transmittedSize } from '../../mail/size.ts';
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
  StorageError,
  type StorageErrorKind,
} from '../types.ts';

/** Settable at any time; each applies to calls made after it is set. */
export interface MemoryFaults {
  /** openMaildrop() rejects with this kind (before taking the lock). */
  failOpenMaildrop?: StorageErrorKind;
  /** maildrop.open() rejects with this kind. */
  failOpen?: StorageErrorKind;
  /** Streams from maildrop.open() emit StorageError('temp') after this many bytes. */
  failReadAfterBytes?: number;
  /** maildrop.commit() rejects with this kind and deletes nothing (after commitDelayMs). */
  failCommit?: StorageErrorKind;
  /** maildrop.commit() waits this long before acting (to test QUIT racing a drop or a shutdown). */
  commitDelayMs?: number;
  /** deliver() rejects with this kind after consuming the stream, storing nothing. */
  failDeliver?: StorageErrorKind;
  /** stats() rejects with this kind. */
  failStats?: StorageErrorKind;
}

export interface MemoryStoreOptions {
  /** Streams from maildrop.open() deliver the message in chunks of this size (default: one chunk). */
  readonly chunkSize?: number;
}

export interface StoredMessage extends MessageInfo {
  readonly content: Buffer;
}

export class MemoryStore implements MailStore {
  faults: MemoryFaults = {};
  readonly chunkSize: number;
  private readonly mailboxes = new Map<string, StoredMessage[]>();
  /** Lock owner per mailbox: a maildrop, or a token from holdLock(). */
  private readonly locks = new Map<string, object>();
  /** @internal Session bookkeeping per mailbox (see MaildropState). */
  readonly states = new Map<string, MaildropState>();
  private seq = 0;
  private closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.chunkSize = options.chunkSize ?? Number.POSITIVE_INFINITY;
    if (!(this.chunkSize > 0)) throw new TypeError('MemoryStore: chunkSize must be positive');
  }

  /** Seeds a message (as a delivery would, without faults). The UIDL defaults to a fresh unique one. */
  add(mailboxId: string, bytes: Buffer | string, options: { uidl?: string } = {}): StoredMessage {
    assertMailboxId(mailboxId);
    const buf = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : Buffer.from(bytes);
    const n = ++this.seq;
    const msg: StoredMessage = Object.freeze({
      id: `m${n}`,
      uidl: options.uidl ?? `mem${n}`,
      size: transmittedSize(buf),
      content: buf,
    });
    this.box(mailboxId).push(msg);
    return msg;
  }

  /** What the mailbox holds now, oldest first. */
  list(mailboxId: string): readonly StoredMessage[] {
    return [...(this.mailboxes.get(mailboxId) ?? [])];
  }

  /** Empties a mailbox (its lock, if any, stays). */
  clear(mailboxId: string): void {
    this.mailboxes.delete(mailboxId);
  }

  isLocked(mailboxId: string): boolean {
    return this.locks.has(mailboxId);
  }

  /** Takes the lock as another session would; returns the function that drops it. */
  holdLock(mailboxId: string): () => void {
    if (this.locks.has(mailboxId)) throw new StorageError('inuse', 'maildrop is locked by another session');
    const owner = {};
    this.locks.set(mailboxId, owner);
    return () => {
      if (this.locks.get(mailboxId) === owner) this.locks.delete(mailboxId);
    };
  }

  async openMaildrop(mailboxId: string, options?: OpenOptions): Promise<Maildrop> {
    this.assertOpen();
    assertMailboxId(mailboxId);
    if (this.faults.failOpenMaildrop) throw new StorageError(this.faults.failOpenMaildrop, 'injected fault');
    const lock = options?.lock !== false;
    if (lock && this.locks.has(mailboxId)) throw new StorageError('inuse', 'maildrop is locked by another session');
    const snapshot = this.box(mailboxId).map(({ id, uidl, size }) => Object.freeze({ id, uidl, size }));
    const drop = new MemoryMaildrop(this, mailboxId, Object.freeze(snapshot), lock);
    if (lock) this.locks.set(mailboxId, drop);
    return drop;
  }

  async deliver(mailboxId: string, message: Readable, _options?: DeliverOptions): Promise<DeliveryResult> {
    this.assertOpen();
    assertMailboxId(mailboxId);
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of message) {
        chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array));
      }
    } catch (e) {
      throw new StorageError('temp', 'message stream failed', { cause: e });
    }
    if (this.faults.failDeliver) throw new StorageError(this.faults.failDeliver, 'injected fault');
    const msg = this.add(mailboxId, Buffer.concat(chunks));
    return { id: msg.id, size: msg.size };
  }

  async stats(mailboxId: string): Promise<MailboxStats> {
    this.assertOpen();
    assertMailboxId(mailboxId);
    if (this.faults.failStats) throw new StorageError(this.faults.failStats, 'injected fault');
    const box = this.mailboxes.get(mailboxId) ?? [];
    return { messages: box.length, bytes: box.reduce((n, m) => n + m.size, 0) };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.locks.clear();
  }

  /** @internal */
  find(mailboxId: string, id: string): StoredMessage | undefined {
    return this.mailboxes.get(mailboxId)?.find((m) => m.id === id);
  }

  /** @internal Removes the messages atomically. */
  remove(mailboxId: string, ids: ReadonlySet<string>): void {
    const box = this.mailboxes.get(mailboxId);
    if (box === undefined) return;
    this.mailboxes.set(
      mailboxId,
      box.filter((m) => !ids.has(m.id)),
    );
  }

  /** @internal */
  unlock(mailboxId: string, owner: object): void {
    if (this.locks.get(mailboxId) === owner) this.locks.delete(mailboxId);
  }

  private box(mailboxId: string): StoredMessage[] {
    let box = this.mailboxes.get(mailboxId);
    if (box === undefined) {
      box = [];
      this.mailboxes.set(mailboxId, box);
    }
    return box;
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('temp', 'store is closed');
  }
}

class MemoryMaildrop implements Maildrop {
  private released = false;
  private readonly ids: ReadonlySet<string>;

  constructor(
    private readonly store: MemoryStore,
    readonly mailboxId: string,
    readonly messages: readonly MessageInfo[],
    private readonly locked: boolean,
  ) {
    this.ids = new Set(messages.map((m) => m.id));
  }

  async open(id: string): Promise<Readable> {
    this.assertUsable();
    const { faults, chunkSize } = this.store;
    if (faults.failOpen) throw new StorageError(faults.failOpen, 'injected fault');
    const msg = this.ids.has(id) ? this.store.find(this.mailboxId, id) : undefined;
    if (msg === undefined) throw new StorageError('notfound', 'no such message');
    const failAfter = faults.failReadAfterBytes;
    const bytes = msg.content;
    function* chunks(): Generator<Buffer> {
      const end = failAfter === undefined ? bytes.length : Math.min(failAfter, bytes.length);
      for (let i = 0; i < end; i += Math.min(chunkSize, end - i)) {
        yield bytes.subarray(i, Math.min(end, i + chunkSize));
      }
      if (failAfter !== undefined) throw new StorageError('temp', 'injected read fault');
    }
    return Readable.from(chunks(), { objectMode: false });
  }

  async readSmall(id: string, maxBytes: number): Promise<Buffer | null> {
    this.assertUsable();
    const { faults } = this.store;
    if (faults.failOpen) throw new StorageError(faults.failOpen, 'injected fault');
    // A store set to fail mid-read must go through open(), the path that can fail half-way.
    if (faults.failReadAfterBytes !== undefined) return null;
    const msg = this.ids.has(id) ? this.store.find(this.mailboxId, id) : undefined;
    if (msg === undefined) throw new StorageError('notfound', 'no such message');
    return msg.content.length <= maxBytes ? Buffer.from(msg.content) : null;
  }

  async commit(deletedIds: readonly string[]): Promise<void> {
    this.assertUsable();
    const { faults } = this.store;
    if (faults.commitDelayMs) await delay(faults.commitDelayMs);
    if (faults.failCommit) throw new StorageError(faults.failCommit, 'injected fault');
    // Only messages of this snapshot can be removed.
    this.store.remove(this.mailboxId, new Set(deletedIds.filter((id) => this.ids.has(id))));
  }

  async readState(): Promise<MaildropState> {
    return structuredClone(this.store.states.get(this.mailboxId) ?? {});
  }

  async writeState(state: MaildropState): Promise<void> {
    this.store.states.set(this.mailboxId, structuredClone(state));
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.locked) this.store.unlock(this.mailboxId, this);
  }

  private assertUsable(): void {
    if (this.released) throw new StorageError('temp', 'maildrop was released');
  }
}
