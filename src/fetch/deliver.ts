/**
 * Local delivery for `postern fetch`: Maildir, mbox (mboxrd) or an external command (MDA), fed synchronously
 * with the bytes of each message as they arrive (wire form, CRLF; stored with LF), and made durable in groups.
 * design.md §5 rule 3 builds on that: the fetcher records the UIDLs of a group, and deletes on the server, only
 * once commit() has returned.
 *
 * The life of a group ("batch") of messages, driven by fetch/fetcher.ts:
 *   reserve(n)  where the next n messages will go (Maildir file names; the mbox offset); the fetcher journals
 *               these intents, fsynced, before any of them can become visible;
 *   begin/write/end, once per message, in arrival order (Maildir: a file in tmp/, written and fsynced at end;
 *               mbox: appended; MDA: spooled, then the command runs and end() waits for its exit status);
 *   commit()    makes the ended messages of the group durable and visible: Maildir renames them into new/ and
 *               fsyncs new/ once; mbox fsyncs the file once.
 * Crash recovery: `recover(intents)` tells which journaled deliveries completed, so a message is neither lost
 * nor delivered twice:
 * - Maildir: the rename into new/ is the commit point; the names are chosen beforehand and journaled.
 * - mbox: the size before the group is journaled; an append the journal does not confirm is cut off (under
 *   the lock) and redone.
 * - MDA: an external program cannot be asked, so a crash between its exit and the journal record can deliver a
 *   message twice (at least once, never lost), as with fetchmail and mpop. Its groups are of one message.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  unlinkSync,
  utimesSync,
  writeSync,
} from 'node:fs';
import { stat, truncate, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fsyncDirSync } from '../durable/files.ts';
import { LockBusyError, LockFile } from '../durable/lockfile.ts';
import { CrlfToLfWriter, MboxrdQuote } from '../mail/transforms.ts';
import { newUniqueBase, sanitizeHostname } from '../storage/maildir/names.ts';

export type DeliveryTarget =
  | { kind: 'maildir'; path: string }
  | { kind: 'mbox'; path: string }
  | { kind: 'mda'; command: string };

/** What the journal keeps about a delivery in progress. */
export type Intent = { file?: string; offset?: number };

export interface DeliveryMeta {
  uidl: string;
  size: number;
  account: string;
}

export interface Delivery {
  readonly target: DeliveryTarget;
  /** Most messages per group (1 for an MDA: each run of the command is its own commit). */
  readonly maxGroup: number;
  describe(): string;
  /** Before the first message: directories made, locks taken (once per run, not per message). */
  prepare(): Promise<void>;
  /** Where the next `n` messages go, to be journaled before any of them is begun. */
  reserve(n: number): Intent[];
  /** Starts the message whose reserved intent is `intent`. */
  begin(intent: Intent, meta: DeliveryMeta): void;
  /** Bytes of the message in wire form (CRLF line endings). */
  write(chunk: Buffer): void;
  /** The message is complete and durable (not yet visible for Maildir); a promise for an MDA. */
  end(): void | Promise<void>;
  /** Drops the message being written, if any (a failure in the middle of it). */
  discard(): void;
  /** Makes the messages ended since the last commit durable and visible; returns how many. */
  commit(): number;
  /** After a crash: which of the journaled deliveries completed? Cleans up partial ones. */
  recover(intents: Intent[]): Promise<boolean[]>;
  /** Releases what prepare() took. Messages ended and not committed are dropped. */
  close(): Promise<void>;
}

export function createDelivery(target: DeliveryTarget): Delivery {
  switch (target.kind) {
    case 'maildir':
      return new MaildirDelivery(target);
    case 'mbox':
      return new MboxDelivery(target);
    case 'mda':
      return new MdaDelivery(target);
  }
}

/** Writes all of `b` at the file's current position (writeSync may write less than asked). */
function writeAll(fd: number, b: Buffer): void {
  let off = 0;
  while (off < b.length) off += writeSync(fd, b, off, b.length - off);
}

// --- Maildir ---------------------------------------------------------------------------------------------------

let seq = 0;
let hostPart: string | undefined;

/** A Maildir unique name, as the store makes them; the host name is looked up once per process, not per name. */
function maildirName(): string {
  hostPart ??= sanitizeHostname(hostname());
  return newUniqueBase(hostPart);
}

class MaildirDelivery implements Delivery {
  readonly maxGroup = 256;
  private fd = -1;
  private name = '';
  private readonly writer = new CrlfToLfWriter((b) => writeAll(this.fd, b));
  /** Ended (written, fsynced, closed) and not yet renamed into new/. */
  private ended: string[] = [];

  constructor(readonly target: { kind: 'maildir'; path: string }) {}

  describe(): string {
    return `Maildir ${this.target.path}`;
  }

  async prepare(): Promise<void> {
    for (const sub of ['tmp', 'new', 'cur']) mkdirSync(join(this.target.path, sub), { recursive: true, mode: 0o700 });
  }

  reserve(n: number): Intent[] {
    return Array.from({ length: n }, () => ({ file: maildirName() }));
  }

  begin(intent: Intent): void {
    this.name = intent.file ?? maildirName();
    this.fd = openSync(join(this.target.path, 'tmp', this.name), 'wx', 0o600);
  }

  write(chunk: Buffer): void {
    this.writer.push(chunk);
  }

  end(): void {
    this.writer.end();
    // The contents must be on disk before the name can appear in new/ (commit).
    fdatasyncSync(this.fd);
    closeSync(this.fd);
    this.fd = -1;
    this.ended.push(this.name);
  }

  discard(): void {
    if (this.fd === -1) return;
    this.writer.reset();
    closeSync(this.fd);
    this.fd = -1;
    try {
      unlinkSync(join(this.target.path, 'tmp', this.name));
    } catch {}
  }

  commit(): number {
    const names = this.ended;
    if (names.length === 0) return 0;
    this.ended = [];
    const tmp = join(this.target.path, 'tmp');
    const cur = join(this.target.path, 'new');
    for (const name of names) renameSync(join(tmp, name), join(cur, name));
    // One directory fsync makes every rename of the group durable: tmp → new is the commit point.
    fsyncDirSync(cur);
    return names.length;
  }

  async recover(intents: Intent[]): Promise<boolean[]> {
    const present = new Set<string>();
    for (const sub of ['new', 'cur']) {
      let names: string[] = [];
      try {
        names = readdirSync(join(this.target.path, sub));
      } catch {}
      // A mail reader may already have moved it to cur/, adding ":2,flags".
      for (const n of names) present.add(n.split(':')[0]);
    }
    return Promise.all(
      intents.map(async (intent) => {
        const name = intent.file;
        if (!name) return false;
        if (present.has(name)) return true;
        await unlink(join(this.target.path, 'tmp', name)).catch(() => {});
        return false;
      }),
    );
  }

  async close(): Promise<void> {
    this.discard();
    // Ended but never committed (the run failed before its group was recorded): not visible, so remove them.
    for (const name of this.ended.splice(0)) {
      try {
        unlinkSync(join(this.target.path, 'tmp', name));
      } catch {}
    }
  }
}

// --- mbox --------------------------------------------------------------------------------------------------------

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
class MboxDelivery implements Delivery {
  readonly maxGroup = 256;
  private fd = -1;
  private lock: LockFile | undefined;
  private quote = new MboxrdQuote();
  private readonly writer = new CrlfToLfWriter((b) => writeAll(this.fd, this.quote.quote(b)));
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
    writeAll(this.fd, Buffer.from(`From MAILER-DAEMON ${asctime(new Date())}\n`, 'latin1'));
  }

  write(chunk: Buffer): void {
    this.writer.push(chunk);
  }

  end(): void {
    this.writer.end();
    const tail = this.quote.finish();
    if (tail.length > 0) writeAll(this.fd, tail);
    // Every message ends with a newline and is followed by an empty line before the next "From ".
    const last = this.quote.lastByte;
    writeAll(this.fd, Buffer.from(last === 0x0a || last === -1 ? '\n' : '\n\n', 'latin1'));
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
        const st = await stat(this.target.path).catch(() => undefined);
        // Bytes after the offset are our unconfirmed appends (complete or not): cut them and deliver again.
        if (st && st.size > offset) await truncate(this.target.path, offset);
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

// --- MDA ---------------------------------------------------------------------------------------------------------

/** An MDA that takes longer than this is killed and the delivery fails. */
const MDA_TIMEOUT_MS = 10 * 60_000;

/**
 * Each message is spooled to a private file (bounded memory whatever its size), then the command runs with the
 * file as its stdin; end() resolves on exit status 0.
 */
class MdaDelivery implements Delivery {
  readonly maxGroup = 1;
  private fd = -1;
  private spool = '';
  private meta: DeliveryMeta | undefined;
  private delivered = 0;
  private readonly writer = new CrlfToLfWriter((b) => writeAll(this.fd, b));

  constructor(
    readonly target: { kind: 'mda'; command: string },
    private readonly spoolDir = process.env.TMPDIR || '/tmp',
  ) {}

  describe(): string {
    return `MDA ${this.target.command}`;
  }

  async prepare(): Promise<void> {}

  reserve(n: number): Intent[] {
    return Array.from({ length: n }, () => ({}));
  }

  begin(_intent: Intent, meta: DeliveryMeta): void {
    this.meta = meta;
    this.spool = join(this.spoolDir, `postern-fetch-${process.pid}-${++seq}-${randomBytes(4).toString('hex')}`);
    this.fd = openSync(this.spool, 'wx', 0o600);
  }

  write(chunk: Buffer): void {
    this.writer.push(chunk);
  }

  async end(): Promise<void> {
    this.writer.end();
    const meta = this.meta;
    let input = -1;
    try {
      input = openSync(this.spool, 'r');
      const child = spawn('/bin/sh', ['-c', this.target.command], {
        stdio: [input, 'ignore', 'pipe'],
        env: {
          ...process.env,
          POSTERN_UIDL: meta?.uidl ?? '',
          POSTERN_ACCOUNT: meta?.account ?? '',
          POSTERN_SIZE: String(meta?.size ?? 0),
        },
      });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => {
        if (stderr.length < 4096) stderr += d.toString();
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), MDA_TIMEOUT_MS);
      const code = await new Promise<number | null>((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (c, signal) => resolve(signal ? null : c));
      }).finally(() => clearTimeout(timer));
      if (code !== 0) {
        throw new Error(
          `MDA "${this.target.command}" failed (${code === null ? 'killed' : `exit ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`,
        );
      }
      this.delivered++;
    } finally {
      if (input !== -1) closeSync(input);
      this.discard();
    }
  }

  discard(): void {
    if (this.fd === -1) return;
    this.writer.reset();
    closeSync(this.fd);
    this.fd = -1;
    try {
      unlinkSync(this.spool);
    } catch {}
  }

  commit(): number {
    const n = this.delivered;
    this.delivered = 0;
    return n;
  }

  async recover(intents: Intent[]): Promise<boolean[]> {
    return intents.map(() => false);
  }

  async close(): Promise<void> {
    this.discard();
  }
}
