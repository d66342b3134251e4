/**
 * `postern fetch` into an mbox file, mboxrd-quoted, under a dot-lock from prepare() to close(); the size before
 * a group is journaled so an unconfirmed append is cut off on recovery (see fetch/deliver.ts).
 */
// `fsp` rather than node:fs/promises: see durable/lockfile.ts (start-up of `postern fetch`).
import {
  closeSync,
  promises as fsp,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  utimesSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { writeAllSync } from '../durable/files.ts';
import { LockBusyError, LockFile } from '../durable/lockfile.ts';
import { CrlfToLfWriter, MboxrdQuote } from '../mail/transforms.ts';
import type { Delivery, Intent } from './deliver.ts';

/** How long to wait for another program's mbox lock, and when a lock is considered abandoned (procmail's 5 min). */
const MBOX_LOCK_WAIT_MS = 30_000;
const MBOX_LOCK_STALE_MS = 5 * 60_000;

/** Takes a dot-lock (`FILE.lock`, created with O_EXCL), the one locking scheme every mbox program understands. */
async function dotLock(file: string): Promise<LockFile> {
  const lockPath = `${file}.lock`;
  try {
    // Other mail programs write these too, so the content is not ours to judge: only age makes one stale.
    return await LockFile.acquire(lockPath, {
      waitMs: MBOX_LOCK_WAIT_MS,
      staleMs: MBOX_LOCK_STALE_MS,
      checkPid: false,
    });
  } catch (err) {
    if (err instanceof LockBusyError) throw new Error(`mbox ${file} is locked (${lockPath} exists)`);
    throw err;
  }
}

async function withDotLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const lock = await dotLock(file);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/** asctime() form for the "From " line, in UTC. */
function asctime(d: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]} ${months[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

/**
 * The mbox is locked (dot-lock) from prepare() to close(), so the offsets journaled by reserve() stay true; the
 * lock file is touched at every commit so a long run is never taken for an abandoned lock.
 */
export class MboxDelivery implements Delivery {
  readonly maxGroup = 256;
  private fd = -1;
  private lock: LockFile | undefined;
  private quote = new MboxrdQuote();
  private readonly writer = new CrlfToLfWriter((b) => writeAllSync(this.fd, this.quote.quote(b)));
  /** Where the message being written began (cut back to it on discard). */
  private start = -1;
  private endedCount = 0;
  private groupStart = -1;

  constructor(readonly target: { kind: 'mbox'; path: string }) {}

  describe(): string {
    return `mbox ${this.target.path}`;
  }

  async prepare(): Promise<void> {
    mkdirSync(dirname(this.target.path), { recursive: true });
    this.lock = await dotLock(this.target.path);
    try {
      this.fd = openSync(this.target.path, 'a', 0o600);
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  reserve(n: number): Intent[] {
    const offset = fstatSync(this.fd).size;
    this.groupStart = offset;
    return Array.from({ length: n }, () => ({ offset }));
  }

  begin(): void {
    this.start = fstatSync(this.fd).size;
    this.quote = new MboxrdQuote();
    writeAllSync(this.fd, Buffer.from(`From MAILER-DAEMON ${asctime(new Date())}\n`, 'latin1'));
  }

  write(chunk: Buffer): void {
    this.writer.pushStored(chunk);
  }

  end(): void {
    this.writer.end();
    const tail = this.quote.finish();
    if (tail.length > 0) writeAllSync(this.fd, tail);
    // Every message ends with a newline and is followed by an empty line before the next "From ".
    const last = this.quote.lastByte;
    writeAllSync(this.fd, Buffer.from(last === 0x0a || last === -1 ? '\n' : '\n\n', 'latin1'));
    this.start = -1;
    this.endedCount++;
  }

  discard(): void {
    if (this.start === -1) return;
    // Leave no half message behind: cut the file back to where this one began.
    this.writer.reset();
    ftruncateSync(this.fd, this.start);
    this.start = -1;
  }

  commit(): number {
    const n = this.endedCount;
    if (n === 0) return 0;
    this.endedCount = 0;
    fsyncSync(this.fd);
    if (this.lock) {
      const now = new Date();
      utimesSync(`${this.target.path}.lock`, now, now);
    }
    return n;
  }

  async recover(intents: Intent[]): Promise<boolean[]> {
    const offsets = intents.map((i) => i.offset).filter((o): o is number => o !== undefined);
    if (offsets.length > 0) {
      const offset = Math.min(...offsets);
      await withDotLock(this.target.path, async () => {
        const st = await fsp.stat(this.target.path).catch(() => undefined);
        // Bytes after the offset are our unconfirmed appends (complete or not): cut them and deliver again.
        if (st && st.size > offset) await fsp.truncate(this.target.path, offset);
      });
    }
    return intents.map(() => false);
  }

  async close(): Promise<void> {
    this.discard();
    if (this.endedCount > 0 && this.fd !== -1) {
      // Appended but never committed (so never recorded): cut back to where the group began.
      this.endedCount = 0;
      ftruncateSync(this.fd, this.groupStart);
    }
    if (this.fd !== -1) closeSync(this.fd);
    this.fd = -1;
    await this.lock?.release();
    this.lock = undefined;
  }
}
