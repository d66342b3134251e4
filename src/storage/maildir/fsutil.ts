/** Small filesystem helpers shared by the Maildir modules: error mapping, bounded concurrency, publishing. */
import { type FileHandle, link, lstat, rename } from 'node:fs/promises';
import { StorageError, type StorageErrorKind } from '../types.ts';

export function errnoCode(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const code = (e as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/**
 * Maps a filesystem error to a storage error kind. A full disk or quota is 'quota' only for deliveries (RFC 3206
 * has no "mailbox full" for a reader; a session that cannot write its lock is simply failing for now).
 * Permissions and a read-only mount are 'perm' for a reader ([SYS/PERM]: the user cannot fix it by retrying)
 * but 'temp' for a delivery: they are an operator's mistake (a chown, a remount) that will be put right, and a
 * permanent answer would bounce the mail (LMTP 5xx, exit 73) instead of leaving it in the MTA's queue.
 */
export function kindOf(e: unknown, forDelivery = false): StorageErrorKind {
  if (e instanceof StorageError) return e.kind;
  switch (errnoCode(e)) {
    case 'ENOSPC':
    case 'EDQUOT':
      return forDelivery ? 'quota' : 'temp';
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return forDelivery ? 'temp' : 'perm';
    default:
      return 'temp';
  }
}

/** Wraps any error as a StorageError (kept as is when it already is one), with the original as the cause. */
export function toStorageError(e: unknown, what: string, forDelivery = false): StorageError {
  if (e instanceof StorageError) return e;
  const code = errnoCode(e);
  return new StorageError(kindOf(e, forDelivery), code ? `${what}: ${code}` : what, { cause: e });
}

export function isNotFound(e: unknown): boolean {
  const code = errnoCode(e);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Runs fn over items with at most `limit` calls in flight; rejects with the first error after all settle. */
export async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failed = false;
  let firstError: unknown;
  const worker = async (): Promise<void> => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        await fn(items[i], i);
      } catch (e) {
        if (!failed) firstError = e;
        failed = true;
      }
    }
  };
  const workers: Promise<void>[] = [];
  for (let w = 0; w < Math.min(limit, items.length); w++) workers.push(worker());
  await Promise.all(workers);
  if (failed) throw firstError;
}

/** Whether a process with this pid exists on this host (EPERM: it does, and belongs to someone else). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoCode(e) !== 'ESRCH';
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Writes all of `buf` at the handle's position (write() may write less than asked). */
export async function writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}

/**
 * Moves tmp/ → new/ without ever replacing an existing file: link() fails on an existing target where rename()
 * would overwrite it. Returns false when the target name is taken. Filesystems without hard links get rename().
 */
export async function publish(from: string, to: string): Promise<boolean> {
  try {
    await link(from, to);
    return true;
  } catch (e) {
    const code = errnoCode(e);
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS' && code !== 'EXDEV') {
      throw e;
    }
  }
  try {
    await lstat(to);
    return false;
  } catch (e) {
    if (!isNotFound(e)) throw e;
  }
  await rename(from, to);
  return true;
}
