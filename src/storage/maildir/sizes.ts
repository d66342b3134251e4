/**
 * Transmitted sizes of messages whose names do not carry `,W=` (Postfix, qmail, procmail, …). Counting means
 * reading the whole file, so each result is kept in `postern-sizes` beside the Maildir's folders:
 *
 *   postern-sizes 1
 *   <base> <physical size> <mtime ms> <transmitted size>
 *
 * An entry is valid while the file's size and mtime match (Maildir files are not rewritten in place, but a
 * careless tool could). The cache is a cache: unreadable lines are ignored, it is replaced atomically
 * (tmp + rename) and never fsynced, and losing it costs one re-read of each message.
 */
import * as fs from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../durable/files.ts';
import { SizeCounter } from '../../mail/size.ts';
import { isNotFound } from './fsutil.ts';

export const SIZE_CACHE_FILE = 'postern-sizes';
const HEADER = 'postern-sizes 1';
const READ_CHUNK = 64 * 1024;

export interface SizeEntry {
  readonly physical: number;
  readonly mtimeMs: number;
  readonly size: number;
}

export async function loadSizeCache(maildir: string): Promise<Map<string, SizeEntry>> {
  const map = new Map<string, SizeEntry>();
  let text: string;
  try {
    text = await readFile(join(maildir, SIZE_CACHE_FILE), 'utf8');
  } catch (e) {
    if (isNotFound(e)) return map;
    throw e;
  }
  if (!text.startsWith(`${HEADER}\n`)) return map;
  // indexOf rather than split: this parses 100 000 lines on a large Maildir's open.
  let at = HEADER.length + 1;
  while (at < text.length) {
    let end = text.indexOf('\n', at);
    if (end === -1) end = text.length;
    const s3 = text.lastIndexOf(' ', end - 1);
    const s2 = s3 > at ? text.lastIndexOf(' ', s3 - 1) : -1;
    const s1 = s2 > at ? text.lastIndexOf(' ', s2 - 1) : -1;
    if (s1 > at) {
      const physical = Number(text.slice(s1 + 1, s2));
      const mtimeMs = Number(text.slice(s2 + 1, s3));
      const size = Number(text.slice(s3 + 1, end));
      if (
        Number.isSafeInteger(physical) &&
        physical >= 0 &&
        Number.isFinite(mtimeMs) &&
        Number.isSafeInteger(size) &&
        size >= 0 &&
        s2 > s1 + 1 &&
        s3 > s2 + 1 &&
        end > s3 + 1
      ) {
        map.set(text.slice(at, s1), { physical, mtimeMs, size });
      }
    }
    at = end + 1;
  }
  return map;
}

/** Bases with a space or line break could not be read back; they are simply not cached. */
export function cacheable(base: string): boolean {
  return !/[ \r\n]/.test(base);
}

export async function saveSizeCache(maildir: string, map: ReadonlyMap<string, SizeEntry>): Promise<void> {
  const parts: string[] = [HEADER];
  for (const [base, e] of map) {
    if (cacheable(base)) parts.push(`${base} ${e.physical} ${e.mtimeMs} ${e.size}`);
  }
  parts.push('');
  // A cache: losing it costs one re-read of each message, so it is replaced atomically but not fsynced.
  await writeFileAtomic(join(maildir, SIZE_CACHE_FILE), parts.join('\n'), { durable: false });
}

/**
 * Reads a message once and counts its transmitted size (src/mail/size.ts), with the stat it was read at.
 * Written with callbacks rather than FileHandle: on a first open of a large Maildir this runs for every
 * message, and the promise API costs several times more per call. The read stops at the size fstat reported:
 * a file that grows meanwhile no longer matches its entry and is counted again next time.
 */
/** Files up to this size are measured with synchronous calls by measureFileSync; larger ones are not. */
export const SYNC_MEASURE_MAX = 256 * 1024;

/**
 * measureFile with synchronous calls, for local disks (storage.sync_small_reads): open, fstat, read and close of
 * a cached file take microseconds each, against a thread-pool round trip each for the asynchronous calls (the
 * first open of a 50 000-message mailbox without sizes in its names made 200 000 of them). Null, and nothing
 * read, when the file is larger than SYNC_MEASURE_MAX: the caller measures it asynchronously, so one large file
 * never holds the event loop. `scratch` is a buffer of at least READ_CHUNK bytes, reused between calls.
 */
export function measureFileSync(path: string, scratch: Buffer): SizeEntry | null {
  const fd = fs.openSync(path, 'r');
  try {
    const st = fs.fstatSync(fd);
    if (st.size > SYNC_MEASURE_MAX) return null;
    const counter = new SizeCounter();
    let total = 0;
    while (total < st.size) {
      const n = fs.readSync(fd, scratch, 0, Math.min(scratch.length, READ_CHUNK), null);
      if (n === 0) break;
      counter.update(scratch.subarray(0, n));
      total += n;
    }
    return { physical: st.size, mtimeMs: st.mtimeMs, size: counter.digest() };
  } finally {
    fs.closeSync(fd);
  }
}

/** A scratch buffer for measureFileSync. */
export const newMeasureScratch = (): Buffer => Buffer.allocUnsafe(READ_CHUNK);

export function measureFile(path: string): Promise<SizeEntry> {
  return new Promise((resolve, reject) => {
    fs.open(path, 'r', (err, fd) => {
      if (err) return reject(err);
      const finish = (e: Error | null, entry?: SizeEntry) =>
        fs.close(fd, () => (e || entry === undefined ? reject(e) : resolve(entry)));
      fs.fstat(fd, (err2, st) => {
        if (err2) return finish(err2);
        const counter = new SizeCounter();
        if (st.size === 0) return finish(null, { physical: 0, mtimeMs: st.mtimeMs, size: 0 });
        const buf = Buffer.allocUnsafe(Math.min(st.size, READ_CHUNK));
        let total = 0;
        const step = (): void => {
          fs.read(fd, buf, 0, buf.length, null, (err3, n) => {
            if (err3) return finish(err3);
            counter.update(buf.subarray(0, n));
            total += n;
            if (n === 0 || total >= st.size)
              finish(null, { physical: st.size, mtimeMs: st.mtimeMs, size: counter.digest() });
            else step();
          });
        };
        step();
      });
    });
  });
}
