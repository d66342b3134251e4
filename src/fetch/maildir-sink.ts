/**
 * `postern fetch` into a Maildir: each message written to tmp/ and fsynced, renamed into new/ at commit (one
 * fsync of new/ per group). fetch/deliver.ts describes the life of a group and crash recovery.
 */
// `fsp` rather than node:fs/promises: see durable/lockfile.ts (start-up of `postern fetch`).
import {
  closeSync,
  constants,
  fdatasyncSync,
  promises as fsp,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  unlinkSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join, sep } from 'node:path';
import { syncDirSync, writeAllSync } from '../durable/files.ts';
import { newUniqueBase, sanitizeHostname } from '../mail/maildir-name.ts';
import { CrlfToLfWriter } from '../mail/transforms.ts';
import type { Delivery, Intent } from './deliver.ts';

let hostPart: string | undefined;

/** A Maildir unique name, as the store makes them; the host name is looked up once per process, not per name. */
function maildirName(): string {
  hostPart ??= sanitizeHostname(hostname());
  return newUniqueBase(hostPart);
}

/** 'wx' as numbers: openSync parses a flags string on every call. */
const CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;

export class MaildirDelivery implements Delivery {
  readonly maxGroup = 256;
  private fd = -1;
  private name = '';
  private readonly writer = new CrlfToLfWriter((b) => writeAllSync(this.fd, b));
  /** Ended (written, fsynced, closed) and not yet renamed into new/. */
  private ended: string[] = [];
  /** tmp/ and new/ with a trailing separator: a file's path is one concatenation (path.join per message showed). */
  private readonly tmp: string;
  private readonly new: string;

  constructor(readonly target: { kind: 'maildir'; path: string }) {
    this.tmp = join(target.path, 'tmp') + sep;
    this.new = join(target.path, 'new') + sep;
  }

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
    this.fd = openSync(this.tmp + this.name, CREATE_NEW, 0o600);
  }

  write(chunk: Buffer): void {
    this.writer.pushStored(chunk);
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
      unlinkSync(this.tmp + this.name);
    } catch {}
  }

  commit(): number {
    const names = this.ended;
    if (names.length === 0) return 0;
    this.ended = [];
    for (const name of names) renameSync(this.tmp + name, this.new + name);
    // One directory fsync makes every rename of the group durable: tmp → new is the commit point.
    syncDirSync(join(this.target.path, 'new'));
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
        await fsp.unlink(join(this.target.path, 'tmp', name)).catch(() => {});
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
