/**
 * The storage contract (design.md §4). Stores know nothing of POP3 wording: they throw StorageError with a
 * kind, and the server maps kinds to RFC 3206 response codes at the edge.
 *
 * Vocabulary: a message `id` is the store's own key (Maildir: the base file name without flags); the `uidl`
 * is what clients see (1–70 chars in 0x21–0x7E, stable across sessions); `size` is octets as transmitted:
 * CRLF line endings, a final line ending present, before dot-stuffing (RFC 1939 §11) — see
 * `transmittedSize` in src/protocol/dot.ts, which defines it exactly.
 */
import type { Readable } from 'node:stream';

export interface MessageInfo {
  readonly id: string;
  readonly uidl: string;
  readonly size: number;
  /** The size is a lower bound (the file could not be read to count it): RETR counts the real one. */
  readonly sizeEstimated?: boolean;
}

/** One user's mailbox as opened by one session: a snapshot taken at login, holding the exclusive lock. */
export interface Maildrop {
  readonly mailboxId: string;
  /** The snapshot, oldest first. Message numbers (msn) are indexes into this array plus one. */
  readonly messages: readonly MessageInfo[];
  /** The stored bytes of one message of the snapshot, streamed (the server repairs CRLF and dot-stuffs). */
  open(id: string): Promise<Readable>;
  /**
   * Optional fast path for small messages: the whole stored message in one buffer, or null when it is larger
   * than `maxBytes` (the caller then streams it with open()). Same errors as open().
   */
  readSmall?(id: string, maxBytes: number): Promise<Buffer | null>;
  /**
   * Optional: the whole snapshot's totals and its LIST and UIDL replies ("msn size\r\n"…, "msn uidl\r\n"…,
   * without the terminator), built once, so a session with nothing deleted answers STAT, LIST and UIDL of a
   * large mailbox without walking its messages.
   */
  readonly prebuilt?: {
    readonly count: number;
    readonly octets: number;
    readonly listBody: Buffer;
    readonly uidlBody: Buffer;
  };
  /**
   * Optional: a message's transmitted size proved to be `size`, not what the snapshot said (a wrong `,W=` in
   * a file name). The store lists the true size from now on, in this session and later ones.
   */
  correctSize?(id: string, size: number): Promise<void>;
  /** Optional: the message as an open file, for the server's own read loop (RETR of large messages). */
  openFile?(id: string): Promise<MessageFile>;
  /**
   * Removes exactly these messages durably, then resolves (Maildir: unlink + fsync of the directory).
   * Only the UPDATE state (after QUIT) calls it. A message already gone counts as removed.
   */
  commit(deletedIds: readonly string[]): Promise<void>;
  /** Drops the lock. Idempotent; called on every way out of a session. */
  release(): Promise<void>;
  /** The mailbox's session bookkeeping (LOGIN-DELAY, EXPIRE); read and written only under the lock. */
  readState(): Promise<MaildropState>;
  /** Replaces the bookkeeping durably (Maildir: temporary file, fsync, rename). */
  writeState(state: MaildropState): Promise<void>;
}

/** A message opened for reading: its stored size, and positioned reads into the caller's buffers. */
export interface MessageFile {
  /** Stored (physical) size in octets, from the open file. */
  readonly physical: number;
  /** Reads up to `length` bytes at `position` into `buf` at `offset`; resolves with the count (0 at the end). */
  read(buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

/**
 * Bookkeeping kept with a mailbox so that every server process (and, with a shared store, every machine)
 * sees it: the last login for RFC 2449 LOGIN-DELAY, and when each message was first retrieved, from which
 * RFC 2449 EXPIRE counts its retention period.
 */
export interface MaildropState {
  /** Time of the last successful login, in ms since the epoch. */
  readonly lastLogin?: number;
  /** Message id → time it was first retrieved (RETR), in ms since the epoch. */
  readonly retrieved?: Readonly<Record<string, number>>;
}

export interface OpenOptions {
  /** Take the exclusive lock (default true). */
  readonly lock?: boolean;
}

export interface DeliverOptions {
  /** Envelope sender, for stores that record it. */
  readonly sender?: string;
  /**
   * The mailbox's quota (0: no limit), enforced by the store at the moment it publishes the message, atomically
   * with concurrent deliveries (PostgreSQL: in the inserting transaction; Maildir: under the mailbox's delivery
   * lock); they refuse with QuotaExceededError. The memory store leaves it to the delivery agent.
   */
  readonly quota?: Quota;
  /**
   * Keep this UIDL instead of making one (moving mail between stores, `postern store migrate`). A store
   * refuses with StorageError('perm') a UIDL it cannot keep or one the mailbox already has.
   */
  readonly uidl?: string;
}

export interface DeliveryResult {
  readonly id: string;
  readonly size: number;
}

export interface MailboxStats {
  readonly messages: number;
  readonly bytes: number;
}

export interface MailStore {
  /** Opens a maildrop, creating an empty mailbox when there is none. Throws StorageError('inuse') if locked. */
  openMaildrop(mailboxId: string, options?: OpenOptions): Promise<Maildrop>;
  /** Stores one message; resolves only once it is durable (Maildir: tmp → fsync → rename into new/). */
  deliver(mailboxId: string, message: Readable, options?: DeliverOptions): Promise<DeliveryResult>;
  /** Count and transmitted size of a mailbox, without taking the lock. */
  stats(mailboxId: string): Promise<MailboxStats>;
  close(): Promise<void>;
}

export type StorageErrorKind = 'temp' | 'inuse' | 'notfound' | 'quota' | 'perm';

export class StorageError extends Error {
  override readonly name = 'StorageError';
  constructor(
    readonly kind: StorageErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The mailbox's own quota (DeliverOptions.quota) refused the message: not a disk or file-system quota. */
export class QuotaExceededError extends StorageError {
  constructor(message: string) {
    super('quota', message);
  }
}

export function isStorageError(e: unknown, kind?: StorageErrorKind): e is StorageError {
  return e instanceof StorageError && (kind === undefined || e.kind === kind);
}

/**
 * Mailbox ids become path components (Maildir) and keys (other stores), so every store accepts the same set:
 * non-empty, at most 255 characters, no '/', '\\', '..', NUL or other control characters, and no leading '.'
 * (which would also hide the mailbox among dotfiles). Anything else is refused with StorageError('perm').
 */
export function assertMailboxId(id: string): void {
  const bad =
    typeof id !== 'string' ||
    id.length === 0 ||
    id.length > 255 ||
    id.startsWith('.') ||
    id.includes('/') ||
    id.includes('\\') ||
    id.includes('..') ||
    /[\x00-\x1f\x7f]/.test(id);
  if (bad) throw new StorageError('perm', `invalid mailbox id ${JSON.stringify(id)}`);
}

/**
 * A mailbox's quota, in the store's terms: every store enforces it at delivery, and user databases (the
 * passwd-file, PostgreSQL) say what it is, so it lives here rather than in delivery/.
 */
export interface Quota {
  /** Octets as transmitted; 0 means no limit. */
  readonly bytes: number;
  /** Messages; 0 means no limit. */
  readonly messages: number;
}

/** Where a user's quota comes from (the users file, the database, or one value for everyone). */
export interface QuotaSource {
  quotaOf(user: string): Promise<Quota>;
}
