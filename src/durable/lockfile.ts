/**
 * Lock files: `FILE.lock` created with O_EXCL and holding `pid host token`, the scheme of mbox dot-locks and of
 * programs that edit a shared file (the users file, fetch's state). One copy, used by every such writer.
 *
 * A lock is stale, and is taken over, when it names a process of this host that no longer exists (a killed
 * command must not block the next one forever), or when it is older than `staleMs` (its holder hung, or lives
 * on a machine that died). Taking over moves the file aside and checks that what was moved is what was judged
 * stale; if another taker replaced it in between, theirs is put back. So two takers never both win, and a
 * fresh lock is never removed.
 *
 * The pid test assumes that the host name names one pid namespace: containers that share a volume must not
 * share a host name.
 */
// node:fs's `promises` (read where used) rather than node:fs/promises: in the CommonJS bundle of `postern fetch`
// (scripts/bundle-fetch.mjs) the module then loads only when an async path runs, not at start-up, where it took
// 3.5 ms (hrtime around the require, pinned to one core); fetch's state lock is taken synchronously (issue 11).
import {
  closeSync,
  promises as fsp,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { uniqueHex } from './files.ts';

export interface LockFileOptions {
  /** How long to wait for a live holder to let go; 0 (the default) fails at once. */
  readonly waitMs?: number;
  /** Age (of the lock file's mtime) after which any lock is stale. Default: never by age alone. */
  readonly staleMs?: number;
  /**
   * Take over a lock whose process (on this host) is gone. Default true; false for files other programs
   * write too (mbox dot-locks), whose content is not ours to interpret.
   */
  readonly checkPid?: boolean;
  /**
   * A lock naming this very process but not held by it is a leftover of an earlier process that had the same
   * pid (common for pid 1 in containers): take it over. Default false (such a lock counts as live).
   */
  readonly ownPidLeftovers?: boolean;
  /** Longest pause between two attempts while waiting (they start at 5 ms and double). Default 100 ms. */
  readonly maxPollMs?: number;
}

/** What a lock file says about its holder. */
export interface LockHolder {
  readonly pid: number | undefined;
  readonly host: string | undefined;
  readonly ageMs: number;
}

/** The lock is held by someone else (and did not come free within `waitMs`). */
export class LockBusyError extends Error {
  override readonly name = 'LockBusyError';
  constructor(
    readonly path: string,
    readonly holder: LockHolder | undefined,
  ) {
    super(`${path} is held${holder?.pid !== undefined ? ` by pid ${holder.pid}` : ''}`);
  }
}

/** Tokens of the lock files this process holds: a lock naming our pid but not one of these is a leftover. */
const liveTokens = new Set<string>();

/**
 * How long an empty lock file counts as being written. Ours are never seen empty (they are linked into place
 * with their content); one left empty by a writer killed between open() and write() — a version before that,
 * or another program — would otherwise block every later taker for good when no `staleMs` is given (found
 * by the `postern fetch` SIGKILL soak: every later run failed with "cannot lock").
 */
const EMPTY_LOCK_GRACE_MS = 10_000;

/** errno codes of file systems without hard links: the lock is then created in place (open O_EXCL, write). */
const NO_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EXDEV']);

function pendingName(path: string): string {
  return `${path}.${process.pid}.${uniqueHex(12)}.new`;
}

/**
 * True when creating the lock failed because it exists (EEXIST). Any other error is thrown, except the codes in
 * `fallback`, for which it returns false (the caller then tries another way).
 */
function lockExists(err: unknown, fallback: ReadonlySet<string> = new Set()): boolean {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code === 'EEXIST') return true;
  if (!fallback.has(code)) throw err;
  return false;
}

/**
 * Creates the lock at `path` with `token` in it, never visible without its content: the token is written to a
 * private file first and hard-linked to the lock name (link fails with EEXIST when the lock exists). A kill
 * at any instant leaves either no lock or a complete one (and at worst a stray `.new` file, never a lock).
 * False when the lock is held.
 */
async function createLock(path: string, token: string): Promise<boolean> {
  const pending = pendingName(path);
  try {
    await fsp.writeFile(pending, token, { flag: 'wx', mode: 0o600 });
    await fsp.link(pending, path);
    return true;
  } catch (err) {
    if (lockExists(err, NO_LINKS)) return false;
  } finally {
    await fsp.unlink(pending).catch(() => {});
  }
  let fh: Awaited<ReturnType<typeof fsp.open>>;
  try {
    fh = await fsp.open(path, 'wx', 0o600);
  } catch (err) {
    if (lockExists(err)) return false;
    throw err;
  }
  try {
    await fh.writeFile(token, 'utf8');
  } catch (err) {
    await fh.close().catch(() => {});
    await fsp.unlink(path).catch(() => {});
    throw err;
  }
  await fh.close();
  return true;
}

function createLockSync(path: string, token: string): boolean {
  const pending = pendingName(path);
  try {
    writeFileSync(pending, token, { flag: 'wx', mode: 0o600 });
    linkSync(pending, path);
    return true;
  } catch (err) {
    if (lockExists(err, NO_LINKS)) return false;
  } finally {
    try {
      unlinkSync(pending);
    } catch {}
  }
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (err) {
    if (lockExists(err)) return false;
    throw err;
  }
  try {
    writeSync(fd, token);
  } catch (err) {
    closeSync(fd);
    try {
      unlinkSync(path);
    } catch {}
    throw err;
  }
  closeSync(fd);
  return true;
}

function parseHolder(content: string, mtimeMs: number): LockHolder {
  const [pidText, host] = content.trim().split(/\s+/);
  const pid = /^\d{1,10}$/.test(pidText ?? '') ? Number(pidText) : undefined;
  return { pid: pid !== undefined && pid > 0 ? pid : undefined, host, ageMs: Date.now() - mtimeMs };
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

function isStale(content: string, holder: LockHolder, opts: LockFileOptions): boolean {
  if (holder.ageMs > (opts.staleMs ?? Number.POSITIVE_INFINITY)) return true;
  if (opts.checkPid === false) return false;
  if (holder.pid === undefined) return content.trim() === '' && holder.ageMs > EMPTY_LOCK_GRACE_MS;
  // A lock without a host part (written by an older version) is taken to be from this host.
  if (holder.host !== undefined && holder.host !== hostname()) return false;
  if (holder.pid === process.pid) return opts.ownPidLeftovers === true && !liveTokens.has(content);
  return !processExists(holder.pid);
}

function asideName(path: string): string {
  return `${path}.${process.pid}.${uniqueHex(12)}.stale`;
}

export class LockFile {
  private released = false;

  private constructor(
    readonly path: string,
    private readonly token: string,
  ) {}

  /** Takes `path` (usually `FILE.lock`), waiting up to `waitMs` for a live holder; LockBusyError otherwise. */
  static async acquire(path: string, opts: LockFileOptions = {}): Promise<LockFile> {
    const token = newToken();
    const deadline = Date.now() + (opts.waitMs ?? 0);
    for (let attempt = 0; ; attempt++) {
      if (await createLock(path, token)) {
        liveTokens.add(token);
        return new LockFile(path, token);
      }
      const holder = await takeOverIfStale(path, opts);
      if (holder === null) continue; // gone or taken over: try again at once
      if (Date.now() >= deadline) throw new LockBusyError(path, holder);
      await sleep(Math.min(5 * 2 ** attempt, opts.maxPollMs ?? 100) + Math.random() * 10);
    }
  }

  /** acquire() for synchronous callers; never waits for a live holder. */
  static acquireSync(path: string, opts: Omit<LockFileOptions, 'waitMs'> = {}): LockFile {
    const token = newToken();
    for (let attempt = 0; attempt < 3; attempt++) {
      if (createLockSync(path, token)) {
        liveTokens.add(token);
        return new LockFile(path, token);
      }
      const holder = takeOverIfStaleSync(path, opts);
      if (holder !== null) throw new LockBusyError(path, holder);
    }
    throw new LockBusyError(path, undefined);
  }

  /** Removes the lock file if it is still ours. Idempotent; never throws. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    liveTokens.delete(this.token);
    const content = await fsp.readFile(this.path, 'utf8').catch(() => null);
    if (content === this.token) await fsp.unlink(this.path).catch(() => {});
  }

  releaseSync(): void {
    if (this.released) return;
    this.released = true;
    liveTokens.delete(this.token);
    try {
      if (readFileSync(this.path, 'utf8') === this.token) unlinkSync(this.path);
    } catch {}
  }
}

function newToken(): string {
  return `${process.pid} ${hostname()} ${uniqueHex(16)}\n`;
}

/** null when the lock is gone or was stale and is now removed; its holder when it is live. */
async function takeOverIfStale(path: string, opts: LockFileOptions): Promise<LockHolder | null> {
  let content: string;
  let holder: LockHolder;
  try {
    const [text, st] = await Promise.all([fsp.readFile(path, 'utf8'), fsp.stat(path)]);
    content = text;
    holder = parseHolder(text, st.mtimeMs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null; // released meanwhile
    throw err;
  }
  // An empty lock is one being written (by a writer that does not link it into place): live while young.
  if (!isStale(content, holder, opts)) return holder;
  const aside = asideName(path);
  try {
    await fsp.rename(path, aside);
  } catch {
    return holder; // someone else moved it first: look again after a pause
  }
  const moved = await fsp.readFile(aside, 'utf8').catch(() => null);
  if (moved !== content) await fsp.link(aside, path).catch(() => {});
  await fsp.unlink(aside).catch(() => {});
  return moved === content ? null : holder;
}

function takeOverIfStaleSync(path: string, opts: LockFileOptions): LockHolder | null {
  let content: string;
  let holder: LockHolder;
  try {
    content = readFileSync(path, 'utf8');
    holder = parseHolder(content, statSync(path).mtimeMs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  if (!isStale(content, holder, opts)) return holder;
  const aside = asideName(path);
  try {
    renameSync(path, aside);
  } catch {
    return holder;
  }
  let moved: string | null = null;
  try {
    moved = readFileSync(aside, 'utf8');
  } catch {}
  if (moved !== content) {
    try {
      linkSync(aside, path);
    } catch {}
  }
  try {
    unlinkSync(aside);
  } catch {}
  return moved === content ? null : holder;
}
