/**
 * The Maildir store (design.md §4, §5, §6): any standard Maildir (Postfix, Dovecot, qmail, procmail writers),
 * a cross-process session lock (lock.ts), sizes and UIDLs without opening message files (scan.ts), deliveries
 * that are durable before they are acknowledged.
 */

import fs from 'node:fs';
import { type FileHandle, mkdir, open, unlink } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { fsyncDir } from '../../durable/files.ts';
import { newUniqueBase, sanitizeHostname } from '../../mail/maildir-name.ts';
import { SizeCounter } from '../../mail/size.ts';
import {
  assertMailboxId,
  type DeliverOptions,
  type DeliveryResult,
  type MailboxStats,
  type Maildrop,
  type MailStore,
  type OpenOptions,
  QuotaExceededError,
  StorageError,
} from '../types.ts';
import { errnoCode, publish, toStorageError, writeAll } from './fsutil.ts';
import { LeftoverSweeper, SWEEP_INTERVAL_MS } from './leftovers.ts';
import {
  currentStamps,
  Listing,
  type ListingRecord,
  readListing,
  readListingSync,
  sameStamps,
  writeListing,
} from './listing.ts';
import { createLockFile, DELIVER_LOCK_FILE, LOCK_FILE, MaildirLock } from './lock.ts';
import { MaildirMaildrop, type Snapshot } from './maildrop.ts';
import { scanMaildir } from './scan.ts';

export interface MaildirStoreOptions {
  /** Directory under which every mailbox lives. */
  readonly root: string;
  /**
   * Path of a mailbox's Maildir relative to root. `%u` is the mailbox id, `%n` its part before '@', `%d` its
   * part after '@' (refused when there is none), `%%` a percent sign. Default `%u/Maildir`.
   */
  readonly layout?: string;
  /** A lock not refreshed for this long is taken over (default 120 s). */
  readonly lockStaleMs?: number;
  /** How often a held lock is refreshed (default 30 s; must be well below lockStaleMs). */
  readonly lockRefreshMs?: number;
  /** Host name for new file names and lock files (default os.hostname()). */
  readonly hostname?: string;
  /**
   * Read small messages (readSmall) with synchronous system calls (default true). On a local disk the file is
   * nearly always in the page cache and the read takes microseconds, against three thread-pool round trips
   * for the asynchronous calls: about three times the RETR rate for typical mail. On a network filesystem,
   * where one read can stall for long, turn it off: every session of the process would wait.
   */
  readonly syncSmallReads?: boolean;
  /**
   * How often one Maildir is swept for what crashed writers left (leftovers.ts): dead deliveries in tmp/ and
   * our own temporary files. The first open or delivery in a process always sweeps. Default one hour.
   */
  readonly leftoverSweepMs?: number;
  /** Where warnings go (an unreadable message file, a wrong size in a file name). */
  readonly warn?: (fields: Record<string, unknown>, msg: string) => void;
}

/** Delivery writes are gathered up to this size. */
const WRITE_BATCH = 64 * 1024;
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
/**
 * How long a delivery under a quota waits for the mailbox's delivery lock. It is held only while one delivery
 * counts the usage and publishes (a directory listing and a rename), so a long wait means something is stuck:
 * the delivery is then deferred (4xx), never lost.
 */
const DELIVER_LOCK_WAIT_MS = 30_000;

/** UIDLs that can be a Maildir base name as they are (no ',', ':', '/', no leading dot). */
const KEEPABLE_UIDL = /^[A-Za-z0-9_=+-][A-Za-z0-9._=+-]{0,69}$/;

export class MaildirStore implements MailStore {
  readonly root: string;
  readonly layout: string;
  readonly lockStaleMs: number;
  readonly lockRefreshMs: number;
  /** The host name as written in lock files. */
  readonly hostname: string;
  /** The host name as written in message file names (Maildir-escaped). */
  private readonly nameHost: string;
  private readonly syncSmallReads: boolean;
  private readonly sweeper: LeftoverSweeper;
  private readonly warn: (fields: Record<string, unknown>, msg: string) => void;
  private readonly drops = new Set<MaildirMaildrop>();
  private closed = false;

  constructor(options: MaildirStoreOptions) {
    if (!options.root) throw new TypeError('MaildirStore: root is required');
    this.root = resolve(options.root);
    this.layout = options.layout ?? '%u/Maildir';
    if (!/%[und]/.test(this.layout)) throw new TypeError('MaildirStore: layout must contain %u, %n or %d');
    this.lockStaleMs = options.lockStaleMs ?? 120_000;
    this.lockRefreshMs = options.lockRefreshMs ?? 30_000;
    if (!(this.lockRefreshMs > 0 && this.lockStaleMs > this.lockRefreshMs)) {
      throw new TypeError('MaildirStore: need 0 < lockRefreshMs < lockStaleMs');
    }
    this.hostname = options.hostname ?? osHostname();
    this.nameHost = sanitizeHostname(this.hostname);
    this.syncSmallReads = options.syncSmallReads ?? true;
    this.sweeper = new LeftoverSweeper({
      nameHost: this.nameHost,
      intervalMs: options.leftoverSweepMs ?? SWEEP_INTERVAL_MS,
    });
    this.warn = options.warn ?? (() => {});
  }

  /** The Maildir directory of a mailbox (validated; always inside root). */
  maildirPath(mailboxId: string): string {
    assertMailboxId(mailboxId);
    const at = mailboxId.lastIndexOf('@');
    const local = at === -1 ? mailboxId : mailboxId.slice(0, at);
    const domain = at === -1 ? '' : mailboxId.slice(at + 1);
    const rel = this.layout.replace(/%([%und])/g, (_, k: string) => {
      const v = k === 'u' ? mailboxId : k === 'n' ? local : k === 'd' ? domain : '%';
      if (v === '') throw new StorageError('perm', `mailbox id ${JSON.stringify(mailboxId)} does not fit the layout`);
      return v;
    });
    const path = join(this.root, rel);
    const inside = relative(this.root, path);
    if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) {
      throw new StorageError('perm', `mailbox id ${JSON.stringify(mailboxId)} escapes the store root`);
    }
    return path;
  }

  async openMaildrop(mailboxId: string, options?: OpenOptions): Promise<Maildrop> {
    this.assertOpen();
    const dir = this.maildirPath(mailboxId);
    // The usual case, a Maildir that exists, costs three synchronous stats instead of three mkdir round trips
    // through the thread pool (with syncSmallReads; on NFS the asynchronous way is kept).
    if (!(this.syncSmallReads && maildirExistsSync(dir))) await ensureMaildir(dir);
    const lock =
      options?.lock === false
        ? null
        : await MaildirLock.acquire(dir, {
            staleMs: this.lockStaleMs,
            refreshMs: this.lockRefreshMs,
            hostname: this.hostname,
            sync: this.syncSmallReads,
          });
    try {
      if (lock !== null) await this.sweeper.maybeSweep(dir);
      const snap = await this.snapshot(mailboxId, dir, lock !== null);
      const drop = new MaildirMaildrop(mailboxId, dir, snap, lock, (d) => this.drops.delete(d), {
        syncReads: this.syncSmallReads,
        warn: this.warn,
      });
      this.drops.add(drop);
      return drop;
    } catch (e) {
      await lock?.release();
      throw toStorageError(e, 'cannot read the maildrop');
    }
  }

  /**
   * The snapshot of a Maildir: from the persistent listing when new/, cur/ and dovecot-uidlist are as it
   * recorded (no readdir, no name parsing), else from a scan, which then replaces the listing (only a session
   * holding the lock writes it). Sizes found wrong by earlier RETRs (`fix` lines) survive the rescan.
   */
  private async snapshot(mailboxId: string, dir: string, write: boolean): Promise<Snapshot> {
    const { stamps, racy } = currentStamps(dir);
    const stored = this.syncSmallReads ? readListingSync(dir) : await readListing(dir).catch(() => null);
    if (stored?.trusted && sameStamps(stored.stamps, stamps)) {
      return { listing: stored.listing, stamps, trusted: true };
    }
    const scanned = await scanMaildir(dir, {
      uidls: true,
      sync: this.syncSmallReads,
      onUnreadable: (name, err, listed) =>
        this.warn(
          { mailbox: mailboxId, file: name, err: errnoCode(err) ?? String(err) },
          listed ? 'message file cannot be read; listed with its stored size' : 'message file cannot be read; left out',
        ),
    });
    const oldFixes = stored?.listing.fixes;
    const fixes = new Map<string, number>();
    let estimated = false;
    const records: ListingRecord[] = scanned.map((m) => {
      const fix = oldFixes?.get(m.parsed.base);
      if (fix !== undefined) fixes.set(m.parsed.base, fix);
      if (m.estimated) estimated = true;
      return {
        folder: m.folder,
        name: m.name,
        size: fix ?? m.size,
        uidl: m.uidl,
        ...(m.estimated && fix === undefined ? { estimated: true } : {}),
      };
    });
    const listing = Listing.fromRecords(records, fixes);
    // A guessed size must be counted again at the next open, so such a listing is never trusted.
    const trusted = !racy && !estimated;
    // Written after the +OK has gone out (the session awaits it before it lets the lock go): a 50 000-message
    // listing is a few MB to encode and write, which the client should not wait for. A cache: if it fails, the
    // next open rescans.
    const written = write
      ? new Promise<void>((r) => setImmediate(r))
          .then(() => writeListing(dir, listing, stamps, trusted))
          .catch(() => {})
      : undefined;
    return { listing, stamps, trusted, written };
  }

  async deliver(mailboxId: string, message: Readable, options?: DeliverOptions): Promise<DeliveryResult> {
    this.assertOpen();
    const dir = this.maildirPath(mailboxId);
    // A kept UIDL becomes the unique part of the file name, which is what a Maildir's UIDL is (names.ts).
    const keptUidl = options?.uidl;
    if (keptUidl !== undefined && !KEEPABLE_UIDL.test(keptUidl)) {
      throw new StorageError('perm', `UIDL ${JSON.stringify(keptUidl)} cannot be a Maildir file name`);
    }
    await ensureMaildir(dir, true);
    // Deliveries are where dead tmp/ files come from, and a mailbox nobody logs into is swept here.
    await this.sweeper.maybeSweep(dir);

    // tmp/: a unique name, created exclusively (a leftover with the same name is never overwritten).
    let base = '';
    let tmpPath = '';
    let fh: FileHandle | undefined;
    for (let attempt = 0; fh === undefined; attempt++) {
      base = keptUidl ?? newUniqueBase(this.nameHost);
      tmpPath = join(dir, 'tmp', base);
      try {
        fh = await open(tmpPath, 'wx', FILE_MODE);
      } catch (e) {
        if (errnoCode(e) !== 'EEXIST' || attempt >= 5) throw toStorageError(e, 'cannot create a message file', true);
      }
    }

    const handle = fh;
    let physical = 0;
    const counter = new SizeCounter();
    try {
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const flush = async (): Promise<void> => {
        if (pendingBytes === 0) return;
        await writeAll(handle, pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes));
        pending = [];
        pendingBytes = 0;
      };
      for await (const chunk of message) {
        const buf: Buffer =
          typeof chunk === 'string'
            ? Buffer.from(chunk)
            : Buffer.isBuffer(chunk)
              ? chunk
              : Buffer.from(chunk as Uint8Array);
        physical += buf.length;
        counter.update(buf);
        pending.push(buf);
        pendingBytes += buf.length;
        if (pendingBytes >= WRITE_BATCH) await flush();
      }
      await flush();
      await handle.sync();
      await handle.close();
    } catch (e) {
      await handle.close().catch(() => {});
      await unlink(tmpPath).catch(() => {});
      throw toStorageError(e, 'cannot write the message', true);
    }

    // new/: published under a name that states both sizes, so no one ever has to read it to list it.
    const size = counter.digest();
    let finalPath = '';
    let id = '';
    const quota = options?.quota;
    let quotaLock: MaildirLock | undefined;
    try {
      if (quota !== undefined && (quota.bytes > 0 || quota.messages > 0)) {
        // Under a quota, the usage is counted and the message published under the mailbox's delivery lock, in
        // every process (LMTP, `postern deliver`, cluster workers): of concurrent deliveries, or the copies of
        // one message for ten addresses of one mailbox, only what fits is published. The message is already
        // written and fsynced in tmp/ by then, so the lock is held for a listing and a rename, not a transfer.
        quotaLock = await MaildirLock.acquire(dir, {
          name: DELIVER_LOCK_FILE,
          waitMs: DELIVER_LOCK_WAIT_MS,
          forDelivery: true,
          staleMs: this.lockStaleMs,
          refreshMs: this.lockRefreshMs,
          hostname: this.hostname,
        });
        const usage = await this.stats(mailboxId);
        if (quota.messages > 0 && usage.messages + 1 > quota.messages) {
          throw new QuotaExceededError(`mailbox is full (${usage.messages} of ${quota.messages} messages)`);
        }
        if (quota.bytes > 0 && usage.bytes + size > quota.bytes) {
          throw new QuotaExceededError(
            `message of ${size} octets does not fit (${usage.bytes} of ${quota.bytes} octets used)`,
          );
        }
      }
      for (let attempt = 0; ; attempt++) {
        id = `${base},S=${physical},W=${size}`;
        finalPath = join(dir, 'new', id);
        if (await publish(tmpPath, finalPath)) break;
        if (keptUidl !== undefined) throw new StorageError('perm', `UIDL ${keptUidl} exists in this mailbox`);
        if (attempt >= 5) throw new StorageError('temp', 'cannot find a unique message name');
        base = newUniqueBase(this.nameHost);
      }
    } catch (e) {
      await quotaLock?.release();
      await unlink(tmpPath).catch(() => {});
      throw toStorageError(e, 'cannot publish the message', true);
    }
    try {
      await unlink(tmpPath).catch(() => {}); // after link(); a rename fallback already moved it
      try {
        await fsyncDir(join(dir, 'new'));
      } catch (e) {
        // Not known to be durable, so not acknowledged; withdraw it so the sender's retry is not a duplicate.
        await unlink(finalPath).catch(() => {});
        throw toStorageError(e, 'cannot make the message durable', true);
      }
    } finally {
      await quotaLock?.release();
    }
    return { id, size };
  }

  async stats(mailboxId: string): Promise<MailboxStats> {
    this.assertOpen();
    const dir = this.maildirPath(mailboxId);
    try {
      const scanned = await scanMaildir(dir, { uidls: false });
      let bytes = 0;
      for (const m of scanned) bytes += m.size;
      return { messages: scanned.length, bytes };
    } catch (e) {
      // Delivery's quota check is the caller: an unreadable mailbox defers the mail rather than bounce it.
      throw toStorageError(e, 'cannot read the mailbox', true);
    }
  }

  /** Releases the maildrops still open through this store (their locks and refresh timers). */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.drops].map((d) => d.release()));
  }

  private assertOpen(): void {
    if (this.closed) throw new StorageError('temp', 'store is closed');
  }
}

function maildirExistsSync(dir: string): boolean {
  for (const f of ['new', 'cur', 'tmp']) {
    if (!fs.statSync(join(dir, f), { throwIfNoEntry: false })?.isDirectory()) return false;
  }
  return true;
}

/**
 * Creates new/, cur/ and tmp/ (and the parents) when missing, private to the mail owner, with the lock files
 * (lock.ts): made once with the Maildir, then only renamed, so locking never needs disk space later.
 */
async function ensureMaildir(dir: string, forDelivery = false): Promise<void> {
  try {
    const made = await Promise.all(
      ['new', 'cur', 'tmp'].map((f) => mkdir(join(dir, f), { recursive: true, mode: DIR_MODE })),
    );
    if (made.some((m) => m !== undefined)) {
      await Promise.all([createLockFile(dir, LOCK_FILE), createLockFile(dir, DELIVER_LOCK_FILE)]);
    }
  } catch (e) {
    // The path goes into the log line (never into a reply): an operator needs to know which one to fix.
    throw toStorageError(e, `cannot create the maildrop ${dir}`, forDelivery);
  }
}
