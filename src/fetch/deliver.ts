/**
 * Local delivery for `postern fetch`: Maildir, mbox (mboxrd) or an external command (MDA). Each delivery
 * resolves only when the message is durable (fsynced) or the MDA said so (exit 0); design.md §5 rule 3 builds on
 * that: the fetcher records the UIDL and deletes on the server only afterwards.
 *
 * Crash recovery: before delivering, the fetcher journals a "pending" record holding the intent; after a crash
 * `recover(intent)` tells whether that delivery completed, so a message is neither lost nor delivered twice:
 * - Maildir: the rename into new/ is the commit point; the file name is chosen beforehand and recorded.
 * - mbox: the size before appending is recorded; an append the journal does not confirm is cut off (under the
 *   lock) and redone.
 * - MDA: an external program cannot be asked, so a crash between its exit and the journal record can deliver a
 *   message twice (at least once, never lost), as with fetchmail and mpop.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { type FileHandle, open, rename, stat, truncate, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fsyncDir } from '../durable/files.ts';
import { LockBusyError, LockFile } from '../durable/lockfile.ts';
import { CrlfToLf, MboxrdQuote } from '../mail/transforms.ts';
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
  /**
   * Writes the message (CRLF from the wire; stored with LF) and resolves once it is durable. Calls `journal`
   * with where the message is going, and waits for it, before anything becomes visible.
   */
  deliver(message: Readable, meta: DeliveryMeta, journal: (intent: Intent) => Promise<void>): Promise<void>;
  /** After a crash: did the delivery described by `intent` complete? Cleans up a partial one. */
  recover(intent: Intent): Promise<boolean>;
  describe(): string;
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

/**
 * Writes `source` through `transforms` into an open file handle, with backpressure (each write is awaited).
 * The sink is an async function rather than handle.createWriteStream(), whose autoClose: false stream never
 * emits 'close', which pipeline() would wait for.
 */
async function writeTo(h: FileHandle, source: Readable, ...transforms: NodeJS.ReadWriteStream[]): Promise<void> {
  const sink = async (chunks: AsyncIterable<Buffer>) => {
    for await (const chunk of chunks) await h.write(chunk);
  };
  // pipeline()'s overloads cannot type a spread of transforms; the chain is source → …transforms → sink.
  await (pipeline as (...streams: unknown[]) => Promise<void>)(source, ...transforms, sink);
}

// --- Maildir ---------------------------------------------------------------------------------------------------

class MaildirDelivery implements Delivery {
  constructor(readonly target: { kind: 'maildir'; path: string }) {}

  describe(): string {
    return `Maildir ${this.target.path}`;
  }

  private ensure(): void {
    for (const sub of ['', 'tmp', 'new', 'cur'])
      mkdirSync(join(this.target.path, sub), { recursive: true, mode: 0o700 });
  }

  async deliver(message: Readable, _meta: DeliveryMeta, journal: (intent: Intent) => Promise<void>): Promise<void> {
    this.ensure();
    const name = newUniqueBase(sanitizeHostname(hostname()));
    await journal({ file: name });
    const tmp = join(this.target.path, 'tmp', name);
    const h = await open(tmp, 'wx', 0o600);
    try {
      await writeTo(h, message, new CrlfToLf());
      await h.sync();
    } catch (err) {
      await h.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw err;
    }
    await h.close();
    // tmp → new is the commit point; the directory fsync makes the rename itself durable.
    await rename(tmp, join(this.target.path, 'new', name));
    await fsyncDir(join(this.target.path, 'new'));
  }

  async recover(intent: Intent): Promise<boolean> {
    const name = intent.file;
    if (!name) return false;
    if (existsSync(join(this.target.path, 'new', name))) return true;
    // A mail reader may already have moved it to cur/, adding ":2,flags".
    const cur = join(this.target.path, 'cur');
    if (existsSync(cur) && readdirSync(cur).some((n) => n === name || n.startsWith(`${name}:`))) return true;
    await unlink(join(this.target.path, 'tmp', name)).catch(() => {});
    return false;
  }
}

// --- mbox --------------------------------------------------------------------------------------------------------

/** How long to wait for another program's mbox lock, and when a lock is considered abandoned (procmail's 5 min). */
const MBOX_LOCK_WAIT_MS = 30_000;
const MBOX_LOCK_STALE_MS = 5 * 60_000;

/** A dot-lock (`FILE.lock`, created with O_EXCL), the one locking scheme every mbox program understands. */
async function withDotLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const lockPath = `${file}.lock`;
  let lock: LockFile;
  try {
    // Other mail programs write these too, so the content is not ours to judge: only age makes one stale.
    lock = await LockFile.acquire(lockPath, {
      waitMs: MBOX_LOCK_WAIT_MS,
      staleMs: MBOX_LOCK_STALE_MS,
      checkPid: false,
    });
  } catch (err) {
    if (err instanceof LockBusyError) throw new Error(`mbox ${file} is locked (${lockPath} exists)`);
    throw err;
  }
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

class MboxDelivery implements Delivery {
  constructor(readonly target: { kind: 'mbox'; path: string }) {}

  describe(): string {
    return `mbox ${this.target.path}`;
  }

  /** The size of the mbox now (0 when it does not exist yet). */
  async size(): Promise<number> {
    const st = await stat(this.target.path).catch(() => undefined);
    return st?.size ?? 0;
  }

  async deliver(message: Readable, _meta: DeliveryMeta, journal: (intent: Intent) => Promise<void>): Promise<void> {
    mkdirSync(dirname(this.target.path), { recursive: true });
    await withDotLock(this.target.path, async () => {
      const h = await open(this.target.path, 'a', 0o600);
      let offset: number | undefined;
      try {
        offset = (await h.stat()).size;
        await journal({ offset });
        const quote = new MboxrdQuote();
        await h.write(`From MAILER-DAEMON ${asctime(new Date())}\n`);
        await writeTo(h, message, new CrlfToLf(), quote);
        // Every message ends with a newline and is followed by an empty line before the next "From ".
        await h.write(quote.lastByte === 0x0a || quote.lastByte === -1 ? '\n' : '\n\n');
        await h.sync();
      } catch (err) {
        // Leave no half message behind: cut the file back to where this one began.
        if (offset !== undefined) await h.truncate(offset).catch(() => {});
        throw err;
      } finally {
        await h.close();
      }
    });
  }

  async recover(intent: Intent): Promise<boolean> {
    if (intent.offset === undefined) return false; // crashed before the offset was journaled: nothing written
    const offset = intent.offset;
    return withDotLock(this.target.path, async () => {
      const size = await this.size();
      // Bytes after the offset are our unconfirmed append (complete or not): cut them and deliver again.
      if (size > offset) await truncate(this.target.path, offset);
      return false;
    });
  }
}

// --- MDA ---------------------------------------------------------------------------------------------------------

/** An MDA that takes longer than this is killed and the delivery fails. */
const MDA_TIMEOUT_MS = 10 * 60_000;

class MdaDelivery implements Delivery {
  constructor(readonly target: { kind: 'mda'; command: string }) {}

  describe(): string {
    return `MDA ${this.target.command}`;
  }

  async deliver(message: Readable, meta: DeliveryMeta, journal: (intent: Intent) => Promise<void>): Promise<void> {
    await journal({});
    const child = spawn('/bin/sh', ['-c', this.target.command], {
      stdio: ['pipe', 'ignore', 'pipe'],
      env: { ...process.env, POSTERN_UIDL: meta.uidl, POSTERN_ACCOUNT: meta.account, POSTERN_SIZE: String(meta.size) },
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => resolve(signal ? null : code));
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), MDA_TIMEOUT_MS);
    try {
      // EPIPE when the MDA exits without reading everything: its exit status decides.
      await pipeline(message, new CrlfToLf(), child.stdin!).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EPIPE') throw err;
      });
      const code = await exited;
      if (code !== 0) {
        throw new Error(
          `MDA "${this.target.command}" failed (${code === null ? 'killed' : `exit ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`,
        );
      }
    } finally {
      clearTimeout(timer);
    }
  }

  async recover(_intent: Intent): Promise<boolean> {
    return false;
  }
}
