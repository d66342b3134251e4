/**
 * One opened maildrop of the Maildir store (store.ts): the snapshot of a session (RFC 1939 §4: fixed message
 * numbers), reading messages (streamed, or small ones in one read), and the deletions of UPDATE, made durable.
 */
import fs from 'node:fs';
import { type FileHandle, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fsyncDir } from '../../durable/files.ts';
import { type Maildrop, type MaildropState, type MessageFile, type MessageInfo, StorageError } from '../types.ts';
import { errnoCode, forEachLimit, isNotFound, toStorageError } from './fsutil.ts';
import { Listing, type Stamps, writeListing } from './listing.ts';
import type { MaildirLock } from './lock.ts';
import { baseOf, parseBase } from './names.ts';
import { type Location, locateAll } from './scan.ts';
import { loadSizeCache, saveSizeCache } from './sizes.ts';
import { readState, writeState } from './state.ts';

/** Read size when streaming large messages: fewer, larger writes to the socket. */
const READ_HIGH_WATER_MARK = 256 * 1024;
/** Unlinks in flight at once when UPDATE deletes many messages. */
const UNLINK_CONCURRENCY = 16;

/** What a session's maildrop is built from. */
export interface Snapshot {
  readonly listing: Listing;
  /** The directories' stamps the listing stands for. */
  readonly stamps: Stamps;
  readonly trusted: boolean;
  /** The listing file being written for this snapshot, if it is. */
  readonly written?: Promise<void>;
}

export class MaildirMaildrop implements Maildrop {
  private listing: Listing;
  private infos: MessageInfo[] | undefined;
  /** Current location of each snapshot message still present, by id (base name); built with `messages`. */
  private readonly where = new Map<string, Location>();
  private released = false;
  private readonly syncReads: boolean;
  private readonly warn: (fields: Record<string, unknown>, msg: string) => void;

  constructor(
    readonly mailboxId: string,
    /** The Maildir directory. */
    readonly path: string,
    private readonly snap: Snapshot,
    private readonly lock: MaildirLock | null,
    private readonly onRelease: (d: MaildirMaildrop) => void,
    opts: { syncReads?: boolean; warn?: (fields: Record<string, unknown>, msg: string) => void } = {},
  ) {
    this.listing = snap.listing;
    this.syncReads = opts.syncReads ?? true;
    this.warn = opts.warn ?? (() => {});
  }

  /** The snapshot, built from the listing's records the first time a command needs single messages. */
  get messages(): readonly MessageInfo[] {
    if (this.infos !== undefined) return this.infos;
    const infos: MessageInfo[] = [];
    for (const r of this.listing.records()) {
      const id = baseOf(r.name);
      infos.push(
        r.estimated ? { id, uidl: r.uidl, size: r.size, sizeEstimated: true } : { id, uidl: r.uidl, size: r.size },
      );
      this.where.set(id, { folder: r.folder, name: r.name });
    }
    this.infos = infos;
    return infos;
  }

  private locate(id: string): Location | undefined {
    if (this.infos === undefined) void this.messages;
    return this.where.get(id);
  }

  /** Totals and the LIST/UIDL replies of the whole snapshot, prebuilt. */
  get prebuilt(): Listing {
    return this.listing;
  }

  /**
   * A message's size proved wrong when it was read (a `,W=` in its name that does not fit the file, or a
   * guessed size): this session and later ones list `size`. The listing file is rewritten with the correction
   * under the stamps this snapshot stands for, so a listing still valid stays valid, and a rescan keeps it.
   */
  async correctSize(id: string, size: number): Promise<void> {
    const messages = this.messages as MessageInfo[];
    const i = messages.findIndex((m) => m.id === id);
    if (i === -1) return;
    messages[i] = { id, uidl: messages[i].uidl, size };
    const records = this.listing
      .records()
      .map((r) => (baseOf(r.name) === id ? { ...r, size, estimated: undefined } : r));
    const fixes = new Map(this.listing.fixes);
    fixes.set(id, size);
    this.listing = Listing.fromRecords(records, fixes);
    if (this.lock === null) return;
    await this.snap.written;
    await writeListing(this.path, this.listing, this.snap.stamps, this.snap.trusted).catch((e: unknown) =>
      this.warn({ mailbox: this.mailboxId, err: String(e) }, 'could not record a corrected message size'),
    );
  }

  async open(id: string): Promise<Readable> {
    const fh = await this.openHandle(id);
    // Errors while streaming are the file system's own (EIO); the stream closes the handle either way.
    return fh.createReadStream({ highWaterMark: READ_HIGH_WATER_MARK });
  }

  async openFile(id: string): Promise<MessageFile> {
    const fh = await this.openHandle(id);
    try {
      const { size } = await fh.stat();
      return {
        physical: size,
        read: async (buf, offset, length, position) => (await fh.read(buf, offset, length, position)).bytesRead,
        close: () => fh.close(),
      };
    } catch (e) {
      await fh.close().catch(() => {});
      throw this.unreadable(id, e);
    }
  }

  /**
   * A message file that is there but cannot be read (mode 000, EIO): [SYS/TEMP] for this command only (an
   * operator can fix it; the rest of the mailbox is served), with a warning in the log.
   */
  private unreadable(id: string, e: unknown): StorageError {
    const code = errnoCode(e);
    this.warn({ mailbox: this.mailboxId, id, err: code ?? String(e) }, 'message file cannot be read');
    return new StorageError('temp', `cannot read the message${code ? `: ${code}` : ''}`, { cause: e });
  }

  async readSmall(id: string, maxBytes: number): Promise<Buffer | null> {
    this.assertUsable();
    const loc = this.locate(id);
    if (this.syncReads && loc !== undefined) {
      let fd = -1;
      try {
        fd = fs.openSync(join(this.path, loc.folder, loc.name), 'r');
        const buf = Buffer.allocUnsafe(maxBytes + 1);
        let n = 0;
        for (;;) {
          const want = buf.length - n;
          const r = fs.readSync(fd, buf, n, want, n);
          n += r;
          if (n > maxBytes) return null;
          if (r < want) break;
        }
        return buf.subarray(0, n);
      } catch {
        // Fall through to the asynchronous path, which finds moved files and maps errors.
      } finally {
        if (fd >= 0) fs.closeSync(fd);
      }
    }
    const fh = await this.openHandle(id);
    try {
      // One read of up to maxBytes + 1: getting more than maxBytes means the file is larger than expected.
      const buf = Buffer.allocUnsafe(maxBytes + 1);
      let n = 0;
      for (;;) {
        const want = buf.length - n;
        const { bytesRead } = await fh.read(buf, n, want, n);
        n += bytesRead;
        if (n > maxBytes) return null;
        // A short read of a regular file is its end: no second call just to learn that.
        if (bytesRead < want) break;
      }
      return buf.subarray(0, n);
    } catch (e) {
      throw this.unreadable(id, e);
    } finally {
      await fh.close().catch(() => {});
    }
  }

  /** Opens a message of the snapshot, finding it again if another program moved it. */
  private async openHandle(id: string): Promise<FileHandle> {
    this.assertUsable();
    const loc = this.locate(id);
    if (loc === undefined) throw new StorageError('notfound', 'no such message');
    let fh: FileHandle | undefined;
    try {
      fh = await open(join(this.path, loc.folder, loc.name), 'r');
    } catch (e) {
      if (!isNotFound(e)) throw this.unreadable(id, e);
    }
    if (fh === undefined) {
      // Another program moved it (new/ → cur/) or changed its flags: find it by base name.
      const now = (
        await locateAll(this.path).catch((e: unknown) => {
          throw toStorageError(e, 'cannot read the maildrop');
        })
      ).get(id);
      if (now !== undefined) {
        this.where.set(id, now);
        try {
          fh = await open(join(this.path, now.folder, now.name), 'r');
        } catch (e) {
          if (!isNotFound(e)) throw this.unreadable(id, e);
        }
      }
      if (fh === undefined) {
        this.where.delete(id);
        throw new StorageError('notfound', 'message is gone');
      }
    }
    return fh;
  }

  async commit(deletedIds: readonly string[]): Promise<void> {
    this.assertUsable();
    // Only messages of this snapshot can be removed: an unknown id names nothing this session may delete.
    void this.messages; // builds `where`
    const ids = [...new Set(deletedIds)].filter((id) => this.where.has(id));
    const errors: unknown[] = [];
    let relisted: Promise<Map<string, Location>> | undefined;
    await forEachLimit(ids, UNLINK_CONCURRENCY, async (id) => {
      const loc = this.locate(id)!;
      try {
        if (await unlinkIfPresent(join(this.path, loc.folder, loc.name))) return;
        relisted ??= locateAll(this.path);
        const now = (await relisted).get(id);
        if (now !== undefined) await unlinkIfPresent(join(this.path, now.folder, now.name));
      } catch (e) {
        errors.push(e);
      }
    });
    for (const folder of ['new', 'cur']) {
      try {
        await fsyncDir(join(this.path, folder));
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) {
      throw new StorageError('temp', `could not delete ${errors.length === 1 ? 'a message' : 'messages'}`, {
        cause: errors.length === 1 ? errors[0] : new AggregateError(errors),
      });
    }
    for (const id of ids) this.where.delete(id);
    // Sizes of names without `,W=` may sit in postern-sizes: drop the entries of what was deleted. Best
    // effort: a stale entry is dropped at the next scan anyway.
    const uncache = ids.filter((id) => parseBase(id).virtual === undefined);
    if (uncache.length > 0) {
      try {
        const cache = await loadSizeCache(this.path);
        let changed = false;
        for (const id of uncache) changed = cache.delete(id) || changed;
        if (changed) await saveSizeCache(this.path, cache);
      } catch {}
    }
  }

  readState(): Promise<MaildropState> {
    this.assertUsable();
    return readState(this.path);
  }

  writeState(state: MaildropState): Promise<void> {
    this.assertUsable();
    return writeState(this.path, state);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.snap.written; // under the lock, like every write of the listing
    this.onRelease(this);
    await this.lock?.release();
  }

  private assertUsable(): void {
    if (this.released) throw new StorageError('temp', 'maildrop was released');
  }
}

/** True when new/, cur/ and tmp/ are all there (synchronous stats: microseconds on a local disk). */

/** Unlinks a file; false when it was not there. */
async function unlinkIfPresent(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}
