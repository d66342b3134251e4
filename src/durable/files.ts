/**
 * Durable file writes, the one copy every writer uses (Maildir state and size cache, the users file, fetch's
 * state snapshot and Maildir sink). A new or replaced file survives a crash only when its data and the
 * directory entry naming it are both on disk: so write a temporary file in the same directory, fsync it,
 * rename it over the target (atomic: readers see the old file or the new one, never a mix), then fsync the
 * directory (design.md §5).
 */
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { type FileHandle, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** errno codes that mean "this platform or file system cannot fsync a directory" (it then orders entries itself). */
const NO_DIR_FSYNC = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EISDIR', 'EPERM']);

function cannotFsyncDir(e: unknown): boolean {
  return NO_DIR_FSYNC.has((e as NodeJS.ErrnoException | undefined)?.code ?? '');
}

/**
 * Makes a directory entry change (create, rename, unlink) durable. Some file systems refuse fsync on a
 * directory (EINVAL) while already making directory operations synchronous; that is not an error.
 */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(dir, 'r');
  } catch (e) {
    if (cannotFsyncDir(e)) return;
    throw e;
  }
  try {
    await fh.sync();
  } catch (e) {
    if (!cannotFsyncDir(e)) throw e;
  } finally {
    await fh.close();
  }
}

/** fsyncDir for the synchronous writers (fetch's state and Maildir sink). */
export function syncDirSync(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch (e) {
    if (cannotFsyncDir(e)) return;
    throw e;
  }
  try {
    fsyncSync(fd);
  } catch (e) {
    if (!cannotFsyncDir(e)) throw e;
  } finally {
    closeSync(fd);
  }
}

let serial = 0n;

/**
 * `digits` hex digits that no other call in this process returns (within 2^(4·digits) ns, 78 hours for 12
 * digits): the monotonic clock in nanoseconds plus a serial, so two calls in the same nanosecond still differ.
 * Callers add the pid (and the host) for uniqueness across processes, as Maildir names do (time, pid, counter,
 * host). Not secret, and no node:crypto: loading it cost `postern fetch` ~6 ms of start-up (issue 11).
 */
export function uniqueHex(digits: number): string {
  const n = process.hrtime.bigint() + ++serial;
  return n.toString(16).padStart(digits, '0').slice(-digits);
}

/** A temporary name next to `path`, unique across processes and calls, hidden from directory listings. */
export function temporaryPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${uniqueHex(12)}.tmp`);
}

export interface AtomicWriteOptions {
  /** Permission bits of the new file, set exactly (not through the umask). Default 0600. */
  readonly mode?: number;
  /** Owner and group to give the new file (needs root). */
  readonly owner?: { readonly uid: number; readonly gid: number };
  /**
   * false for caches whose loss costs only a recomputation: no fsync of the file or the directory, just the
   * atomic rename. Default true.
   */
  readonly durable?: boolean;
}

/** Replaces `path` with `data` atomically and (by default) durably: temporary, fsync, rename, fsync dir. */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  const mode = opts.mode ?? 0o600;
  const durable = opts.durable ?? true;
  const tmp = temporaryPath(path);
  let fh: FileHandle | null = await open(tmp, 'wx', mode);
  try {
    await fh.chmod(mode); // open()'s mode passes through the umask; set it exactly.
    if (opts.owner) await fh.chown(opts.owner.uid, opts.owner.gid);
    await fh.writeFile(data);
    if (durable) await fh.sync();
    await fh.close();
    fh = null;
    await rename(tmp, path);
  } catch (err) {
    await fh?.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  if (durable) await fsyncDir(dirname(path));
}

/** writeFileAtomic for the synchronous writers. */
export function writeFileAtomicSync(path: string, data: string, mode = 0o600): void {
  const tmp = temporaryPath(path);
  const fd = openSync(tmp, 'wx', mode);
  try {
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {}
    throw err;
  }
  syncDirSync(dirname(path));
}

/** Writes all of `b` at the file's current position (writeSync may write less than asked). */
export function writeAllSync(fd: number, b: Uint8Array): void {
  let off = 0;
  while (off < b.length) off += writeSync(fd, b, off, b.length - off);
}
