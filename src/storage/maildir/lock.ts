/**
 * The POP3 session lock of one Maildir (RFC 1939 §8: the server acquires an exclusive-access lock on the
 * maildrop after a successful login). It must hold across the worker processes of one machine and across
 * MaildirStore instances in one process, so it lives in the filesystem:
 *
 *   postern-pop3.lock          created with O_EXCL; holds {pid, host, time, token}; its mtime is refreshed
 *                              every `refreshMs` while held.
 *   postern-pop3.lock.takeover a short-lived O_EXCL mutex held only while removing a lock file (taking over a
 *                              stale lock, or releasing our own).
 *
 * A lock is stale when its mtime is older than `staleMs` (the holder stopped refreshing: crashed, hung, or on
 * another machine that died), or when it names a process on this host that no longer exists.
 *
 * Why the takeover mutex: "check that it is stale, then remove it" is two steps. Two takers that both saw the
 * same stale file could otherwise interleave so that the slower one removes the *fresh* lock the faster one
 * just created, and both would think they hold the maildrop. Under the mutex, the remover re-checks that the
 * file is still the same stale inode before unlinking, and no one else unlinks meanwhile; creating a lock
 * stays a single O_EXCL call that can never clobber anything. The mutex is held for a few system calls; if a
 * process dies holding it, it is stale after GUARD_STALE_MS (or at once, if its pid is gone).
 *
 * The pid test assumes the hostname names one pid namespace: containers that share a Maildir volume must not
 * share a hostname.
 */
import { randomUUID } from 'node:crypto';
import { type FileHandle, open, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { StorageError } from '../types.ts';
import { errnoCode, isNotFound, sleep, toStorageError } from './fsutil.ts';

export const LOCK_FILE = 'postern-pop3.lock';
const GUARD_SUFFIX = '.takeover';
const GUARD_STALE_MS = 10_000;
const ATTEMPTS = 50;

export interface LockOptions {
  readonly staleMs: number;
  readonly refreshMs: number;
  /** This machine's name as written in lock files (compared verbatim). */
  readonly hostname: string;
}

interface Holder {
  readonly dev: number;
  readonly ino: number;
  readonly mtimeMs: number;
  readonly pid?: number;
  readonly host?: string;
  readonly token?: string;
}

/** Tokens of the lock files (and takeover mutexes) this process holds or is creating right now. */
const liveTokens = new Set<string>();

function contentFor(token: string, hostname: string): string {
  return `${JSON.stringify({ pid: process.pid, host: hostname, time: new Date().toISOString(), token })}\n`;
}

/** Creates `path` with O_EXCL. Returns its identity, or null when it already exists. */
async function createExclusive(path: string, content: string): Promise<{ dev: number; ino: number } | null> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'wx', 0o600);
  } catch (e) {
    if (errnoCode(e) === 'EEXIST') return null;
    throw e;
  }
  try {
    await fh.writeFile(content);
    const st = await fh.stat();
    await fh.close();
    return { dev: st.dev, ino: st.ino };
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(path).catch(() => {});
    throw e;
  }
}

/** Reads a lock file through one handle, so its identity, age and content belong to the same inode. */
async function inspect(path: string): Promise<Holder | null> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
  try {
    const st = await fh.stat();
    const text = (await fh.readFile({ encoding: 'utf8' })).slice(0, 4096);
    let info: { pid?: unknown; host?: unknown; token?: unknown } = {};
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed === 'object' && parsed !== null) info = parsed;
    } catch {
      // Empty (its creator is between open and write) or foreign: judged by age alone.
    }
    return {
      dev: st.dev,
      ino: st.ino,
      mtimeMs: st.mtimeMs,
      pid: Number.isSafeInteger(info.pid) && (info.pid as number) > 0 ? (info.pid as number) : undefined,
      host: typeof info.host === 'string' ? info.host : undefined,
      token: typeof info.token === 'string' ? info.token : undefined,
    };
  } finally {
    await fh.close();
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    return errnoCode(e) !== 'ESRCH';
  }
}

function isStale(h: Holder, staleMs: number, hostname: string): boolean {
  if (Date.now() - h.mtimeMs > staleMs) return true;
  if (h.pid === undefined || h.host !== hostname) return false;
  // Our own pid: live only if one of our stores holds it (a leftover from an earlier process that had the
  // same pid — common for pid 1 in containers — is not).
  if (h.pid === process.pid) return h.token === undefined || !liveTokens.has(h.token);
  return !processExists(h.pid);
}

/** Runs fn while holding the takeover mutex. Returns false, without running fn, when someone else holds it. */
async function withGuard(lockPath: string, opts: LockOptions, fn: () => Promise<void>): Promise<boolean> {
  const guardPath = lockPath + GUARD_SUFFIX;
  const token = randomUUID();
  liveTokens.add(token);
  try {
    const created = await createExclusive(guardPath, contentFor(token, opts.hostname));
    if (created === null) {
      const g = await inspect(guardPath);
      // A crash between creating and removing the mutex is the only way to leave one behind.
      if (g !== null && isStale(g, Math.min(GUARD_STALE_MS, opts.staleMs), opts.hostname)) {
        const again = await inspect(guardPath);
        if (again !== null && again.ino === g.ino && again.dev === g.dev) await unlink(guardPath).catch(() => {});
      }
      return false;
    }
    try {
      await fn();
    } finally {
      await unlink(guardPath).catch(() => {});
    }
    return true;
  } finally {
    liveTokens.delete(token);
  }
}

export class MaildirLock {
  private timer: NodeJS.Timeout | undefined;
  private released = false;
  /** Set when the refresh found our lock file gone or replaced (someone judged us stale). */
  lost = false;

  private constructor(
    readonly path: string,
    private readonly token: string,
    private readonly dev: number,
    private readonly ino: number,
    private readonly opts: LockOptions,
  ) {}

  /** Takes the lock of the Maildir at `dir`, taking over a stale one. StorageError('inuse') if it is held. */
  static async acquire(dir: string, opts: LockOptions): Promise<MaildirLock> {
    const path = join(dir, LOCK_FILE);
    const token = randomUUID();
    liveTokens.add(token);
    try {
      for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
        const created = await createExclusive(path, contentFor(token, opts.hostname));
        if (created !== null) {
          const lock = new MaildirLock(path, token, created.dev, created.ino, opts);
          lock.startRefresh();
          return lock;
        }
        const holder = await inspect(path);
        if (holder === null) continue; // released between our two calls
        if (!isStale(holder, opts.staleMs, opts.hostname)) {
          throw new StorageError('inuse', 'maildrop is locked by another session');
        }
        const ran = await withGuard(path, opts, async () => {
          const again = await inspect(path);
          if (
            again !== null &&
            again.ino === holder.ino &&
            again.dev === holder.dev &&
            isStale(again, opts.staleMs, opts.hostname)
          ) {
            await unlink(path).catch((e: unknown) => {
              if (!isNotFound(e)) throw e;
            });
          }
        });
        if (!ran) await sleep(5 + Math.floor(Math.random() * 20));
      }
      throw new StorageError('temp', 'could not take the maildrop lock (contention)');
    } catch (e) {
      liveTokens.delete(token);
      throw toStorageError(e, 'maildrop lock');
    }
  }

  private startRefresh(): void {
    this.timer = setInterval(() => void this.refresh(), this.opts.refreshMs);
    this.timer.unref();
  }

  /** Touches the lock file while it is still ours; notices (and stops) when it is not. */
  async refresh(): Promise<void> {
    if (this.released || this.lost) return;
    try {
      const st = await stat(this.path);
      if (st.ino !== this.ino || st.dev !== this.dev) {
        this.markLost();
        return;
      }
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

  /** Stops refreshing and removes the lock file if it is still ours. Idempotent; never throws. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    const removeIfOurs = async (): Promise<void> => {
      const h = await inspect(this.path);
      if (h !== null && h.token === this.token && h.ino === this.ino && h.dev === this.dev) {
        await unlink(this.path).catch(() => {});
      }
    };
    try {
      for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
        if (await withGuard(this.path, this.opts, removeIfOurs)) return;
        await sleep(5 + Math.floor(Math.random() * 20));
      }
      // The mutex stayed busy (a crashed taker): the small race it prevents is better than a lock left behind.
      await removeIfOurs();
    } catch {
      // Left behind, the file goes stale: at once for this process, after staleMs for others.
    } finally {
      liveTokens.delete(this.token);
    }
  }
}
