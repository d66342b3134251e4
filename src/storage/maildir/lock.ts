/**
 * Cross-process locks of one Maildir, kept in the file system so that they hold across the worker processes of
 * one machine, across MaildirStore instances in one process, and between `postern serve` and `postern deliver`:
 *
 *   postern-pop3.lock      the POP3 session lock (RFC 1939 §8: exclusive access to the maildrop after login);
 *   postern-deliver.lock   held for the instant a delivery under a quota checks the usage and publishes, so
 *                          concurrent deliveries to one mailbox cannot each see room that only one of them has.
 *
 * A lock is one empty file, created with the Maildir and then only ever renamed, never written: taking it renames
 * `NAME` (free) to `NAME.<pid>.<token>.<host>` (held), releasing renames it back. A rename needs no free disk space
 * (no data block, no new inode), so a full disk still lets users log in and delete mail to free space; a lock
 * that had to be written would refuse every login with ENOSPC. rename(2) is atomic: of two takers renaming the
 * same name, one succeeds and the other gets ENOENT, so no separate mutex is needed.
 *
 * The held file's mtime is refreshed every `refreshMs` while held. A lock is stale when its mtime is older than
 * `staleMs` (the holder stopped refreshing: crashed, hung, or on another machine that died), or when its name
 * gives a process on this host that no longer exists (then at once). A stale lock is taken over by renaming it
 * to the taker's own held name. Every rename of a lock to a held name is preceded by a touch, so a held name is
 * never seen with the previous holder's old mtime.
 *
 * Only a Maildir with no lock file at all (made by another program, or by a version before this scheme) gets
 * one created (empty: an inode, no data). A taker that created one could race another that renamed an existing
 * one it had not yet seen, so after every acquisition the holder lists the directory once more: if another live
 * holder shows up, the newcomer removes its own file and reports the maildrop in use. That check is sound
 * because the later of two acquisitions always lists after the earlier one's rename.
 *
 * The pid test assumes the hostname names one pid namespace: containers that share a Maildir volume must not
 * share a hostname.
 */
import { readdirSync, renameSync, utimesSync } from 'node:fs';
import { open, readdir, rename, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { randomHex } from '../../mail/random.ts';
import { StorageError } from '../types.ts';
import { errnoCode, isNotFound, processExists, sleep, toStorageError } from './fsutil.ts';

export const LOCK_FILE = 'postern-pop3.lock';
export const DELIVER_LOCK_FILE = 'postern-deliver.lock';
/** Rounds of "rename, else inspect and take over" before giving up on a busy lock. */
const ATTEMPTS = 50;

export interface LockOptions {
  readonly staleMs: number;
  readonly refreshMs: number;
  /** This machine's name (compared after the same escaping as in lock file names). */
  readonly hostname: string;
  /** Lock file name in the Maildir (default LOCK_FILE). */
  readonly name?: string;
  /** Wait up to this long for a live holder to let go, rather than failing with 'inuse' at once (default 0). */
  readonly waitMs?: number;
  /** Taken by a delivery: file-system errors map as for deliveries (a permission error defers, fsutil.kindOf). */
  readonly forDelivery?: boolean;
  /**
   * Take, check and release the lock with synchronous calls (the same calls, in the same order): on a local
   * disk each is microseconds, where a trip through the thread pool costs a thread wake-up, and a login makes
   * four of them. Off for network filesystems (storage.sync_small_reads = false).
   */
  readonly sync?: boolean;
}

interface HeldName {
  readonly pid: number;
  readonly token: string;
  readonly host: string;
}

/** This process's pid (`process.pid` is a getpid(2) at every read). */
const PID = process.pid;

/** Tokens of the locks this process holds or is taking right now. */
const liveTokens = new Set<string>();

/** Host names go into file names: anything but letters, digits, '-' and '_' becomes '_' (dots separate fields). */
export function lockHost(hostname: string): string {
  return hostname.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64) || '_';
}

function heldName(base: string, held: HeldName): string {
  return `${base}.${held.pid}.${held.token}.${held.host}`;
}

/** Parses `BASE.<pid>.<token>.<host>`; null for anything else (the free name, foreign files). */
export function parseHeldName(base: string, name: string): HeldName | null {
  if (!name.startsWith(`${base}.`)) return null;
  const m = /^(\d{1,10})\.([0-9a-f]{16})\.([A-Za-z0-9_-]{1,64})$/.exec(name.slice(base.length + 1));
  if (!m) return null;
  return { pid: Number(m[1]), token: m[2], host: m[3] };
}

function isStale(held: HeldName, mtimeMs: number, opts: LockOptions): boolean {
  if (Date.now() - mtimeMs > opts.staleMs) return true;
  if (held.host !== lockHost(opts.hostname)) return false;
  // Our own pid: live only if this process holds it (a leftover from an earlier process that had the same pid —
  // common for pid 1 in containers — is not).
  if (held.pid === PID) return !liveTokens.has(held.token);
  return !processExists(held.pid);
}

/** The held lock files in `dir` for `base`, by name. */
async function listHeld(
  dir: string,
  base: string,
  sync = false,
): Promise<{ names: Map<string, HeldName>; free: boolean }> {
  const names = new Map<string, HeldName>();
  let free = false;
  for (const name of sync ? readdirSync(dir) : await readdir(dir)) {
    if (name === base) free = true;
    const h = parseHeldName(base, name);
    if (h !== null) names.set(name, h);
  }
  return { names, free };
}

/** Touches then renames `from` to `to`; false when `from` is gone (someone else renamed it first). */
async function touchAndRename(from: string, to: string, sync = false): Promise<boolean> {
  try {
    const now = new Date();
    if (sync) {
      utimesSync(from, now, now);
      renameSync(from, to);
    } else {
      await utimes(from, now, now);
      await rename(from, to);
    }
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
}

/** Creates the free lock file when there is none. An empty file: it needs an inode, no data block. */
export async function createLockFile(dir: string, base: string): Promise<void> {
  try {
    await (await open(join(dir, base), 'wx', 0o600)).close();
  } catch (e) {
    if (errnoCode(e) !== 'EEXIST') throw e;
  }
}

export class MaildirLock {
  private timer: NodeJS.Timeout | undefined;
  private released = false;
  /** Set when the refresh found our lock file gone (someone judged us stale and took over). */
  lost = false;

  private constructor(
    readonly dir: string,
    readonly base: string,
    /** Our held file. */
    readonly path: string,
    private readonly token: string,
    private readonly opts: LockOptions,
  ) {}

  /**
   * Takes the lock of the Maildir at `dir` (LOCK_FILE unless `opts.name` says otherwise), taking over a stale
   * one. StorageError('inuse') if a live process holds it (after `opts.waitMs`, if given).
   */
  static async acquire(dir: string, opts: LockOptions): Promise<MaildirLock> {
    const base = opts.name ?? LOCK_FILE;
    const held: HeldName = { pid: PID, token: randomHex(8), host: lockHost(opts.hostname) };
    const mine = join(dir, heldName(base, held));
    const deadline = Date.now() + (opts.waitMs ?? 0);
    liveTokens.add(held.token);
    try {
      for (let attempt = 0; ; attempt++) {
        if (await MaildirLock.tryOnce(dir, base, mine, opts)) {
          if (await MaildirLock.aloneAfterTaking(dir, base, mine, held, opts)) {
            const lock = new MaildirLock(dir, base, mine, held.token, opts);
            lock.startRefresh();
            return lock;
          }
          await unlink(mine).catch(() => {});
          if (Date.now() >= deadline) throw new StorageError('inuse', 'maildrop is locked by another session');
        } else if (Date.now() >= deadline) {
          if (attempt >= ATTEMPTS) throw new StorageError('temp', 'could not take the maildrop lock (contention)');
          const busy = await MaildirLock.liveHolder(dir, base, opts);
          if (busy) throw new StorageError('inuse', 'maildrop is locked by another session');
        }
        await sleep(5 + Math.floor(Math.random() * 20));
      }
    } catch (e) {
      liveTokens.delete(held.token);
      throw toStorageError(e, 'maildrop lock', opts.forDelivery);
    }
  }

  /** One round: rename the free file to ours, else take over a stale holder. True when `mine` now exists. */
  private static async tryOnce(dir: string, base: string, mine: string, opts: LockOptions): Promise<boolean> {
    if (await touchAndRename(join(dir, base), mine, opts.sync)) return true;
    const { names, free } = await listHeld(dir, base);
    if (free) return false; // released meanwhile: the next round renames it
    if (names.size === 0) {
      // No lock file at all (a Maildir made by another program): make one. The check after taking it settles a
      // race with a holder whose file this listing missed.
      await createLockFile(dir, base);
      return touchAndRename(join(dir, base), mine);
    }
    for (const [name, h] of names) {
      let st: Awaited<ReturnType<typeof stat>>;
      try {
        st = await stat(join(dir, name));
      } catch (e) {
        if (isNotFound(e)) continue;
        throw e;
      }
      if (isStale(h, st.mtimeMs, opts) && (await touchAndRename(join(dir, name), mine))) return true;
    }
    return false;
  }

  /** After taking: true unless another live holder's file exists too (then the newcomer gives way). */
  private static async aloneAfterTaking(
    dir: string,
    base: string,
    mine: string,
    held: HeldName,
    opts: LockOptions,
  ): Promise<boolean> {
    const { names } = await listHeld(dir, base, opts.sync);
    for (const [name, h] of names) {
      if (h.token === held.token) continue;
      try {
        if (!isStale(h, (await stat(join(dir, name))).mtimeMs, opts)) return false;
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    }
    return names.has(mine.slice(dir.length + 1));
  }

  /** True when a live process holds the lock now. */
  private static async liveHolder(dir: string, base: string, opts: LockOptions): Promise<boolean> {
    const { names } = await listHeld(dir, base);
    for (const [name, h] of names) {
      try {
        if (!isStale(h, (await stat(join(dir, name))).mtimeMs, opts)) return true;
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    }
    return false;
  }

  private startRefresh(): void {
    this.timer = setInterval(() => void this.refresh(), this.opts.refreshMs);
    this.timer.unref();
  }

  /** Touches our lock file while it is still ours; notices (and stops) when it is not. Needs no disk space. */
  async refresh(): Promise<void> {
    if (this.released || this.lost) return;
    try {
      const now = new Date();
      await utimes(this.path, now, now);
    } catch (e) {
      if (isNotFound(e)) this.markLost();
      // Other errors: try again at the next tick; the lock only goes stale after staleMs.
    }
  }

  private markLost(): void {
    this.lost = true;
    if (this.timer) clearInterval(this.timer);
  }

  /** Stops refreshing and renames our file back to the free name if it is still ours. Idempotent; never throws. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    try {
      // A file taken over by someone else has another name now: the rename finds nothing and changes nothing.
      if (this.opts.sync) renameSync(this.path, join(this.dir, this.base));
      else await rename(this.path, join(this.dir, this.base));
    } catch {
      // Gone (taken over), or an I/O error: left behind, our file is stale at once for this process (its token
      // is no longer live) and after staleMs for others.
    } finally {
      liveTokens.delete(this.token);
    }
  }
}
