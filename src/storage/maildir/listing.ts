/**
 * The persistent listing of a Maildir (`postern-listing` beside new/ and cur/): every message's folder, file
 * name, transmitted size and UIDL, with the LIST and UIDL replies already built, and the identity of the
 * directories it was taken from. Opening a large mailbox again is then three stats and one read instead of
 * two readdirs, 100 000 name parses and a sort (design.md §6: "opening a large mailbox is one small read").
 *
 * Validity. Every change to a Maildir's list of messages (a delivery into new/, a move to cur/, a flag change,
 * a deletion, by Postern or by any other program) creates, renames or removes a directory entry, which sets
 * the directory's mtime. The listing records the inode and mtime (nanoseconds) of new/ and cur/, and of
 * dovecot-uidlist (UIDLs come from it), as they were *before* the directories were read; it is used only while
 * all three are unchanged, and rebuilt (repaired) otherwise. Directory times come from a clock that ticks
 * coarsely, so a change in the same tick as the reading would keep the mtime: a listing whose directories
 * changed less than RACY_MS before they were read is written but marked untrusted, and the next open reads the
 * directories again (as Git does with a "racily clean" index). What the listing cannot see is a message file
 * rewritten in place under the same name, which no Maildir writer does.
 *
 * Format (UTF-8 for names; sections with byte lengths, so the bodies are sliced out without being scanned):
 *
 *   postern-listing 1
 *   stamps <1 trusted|0> <new/ ino:mtimeNs> <cur/ ino:mtimeNs> <dovecot-uidlist ino:size:mtimeNs|->
 *   count <messages> <octets>
 *   fix <base> <size>               zero or more: sizes found wrong when a message was read (see correct())
 *   list <bytes>\n<"msn size\r\n" for every message>
 *   uidl <bytes>\n<"msn uidl\r\n" for every message>
 *   names <bytes>\n<"n" or "c", the file name, "\n" (and "?" before it when the size is only estimated)>
 *
 * The file is a cache: written atomically (temporary file, rename) without fsync, any doubt (a bad header, a
 * length that does not add up) means "no listing", and losing it costs one scan.
 */
import * as fs from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../durable/files.ts';
import { isNotFound } from './fsutil.ts';
import { baseOf } from './names.ts';
import type { Folder } from './scan.ts';
import { UIDLIST_FILE } from './uidlist.ts';

export const LISTING_FILE = 'postern-listing';
const NOTHING = Buffer.alloc(0);
const NO_FIXES: ReadonlyMap<string, number> = new Map();
const MAGIC = 'postern-listing 1';
/** Directory changes younger than this when the directories are read make the listing untrusted. */
export const RACY_MS = 1000;

export interface ListingRecord {
  folder: Folder;
  name: string;
  size: number;
  uidl: string;
  /** The size is a guess (from stat: the file could not be read to count it); RETR counts it. */
  estimated?: boolean;
}

/** Identity of new/, cur/ and dovecot-uidlist, as strings compared for equality. */
export interface Stamps {
  readonly newDir: string;
  readonly curDir: string;
  readonly uidlist: string;
}

/** The stamps now, and whether a directory changed so recently that a change in the same tick could hide. */
export function currentStamps(maildir: string, now = Date.now()): { stamps: Stamps; racy: boolean } {
  let racy = false;
  const dirStamp = (folder: Folder): string => {
    const st = fs.statSync(join(maildir, folder), { bigint: true, throwIfNoEntry: false });
    if (st === undefined) return '-';
    if (now - Number(st.mtimeMs) < RACY_MS) racy = true;
    return `${st.ino}:${st.mtimeNs}`;
  };
  const newDir = dirStamp('new');
  const curDir = dirStamp('cur');
  const u = fs.statSync(join(maildir, UIDLIST_FILE), { bigint: true, throwIfNoEntry: false });
  const uidlist = u === undefined ? '-' : `${u.ino}:${u.size}:${u.mtimeNs}`;
  if (u !== undefined && now - Number(u.mtimeMs) < RACY_MS) racy = true;
  return { stamps: { newDir, curDir, uidlist }, racy };
}

export function sameStamps(a: Stamps, b: Stamps): boolean {
  return a.newDir === b.newDir && a.curDir === b.curDir && a.uidlist === b.uidlist;
}

/**
 * A snapshot's listing: totals and the LIST/UIDL bodies at hand, the per-message records parsed only when a
 * command needs them (RETR, DELE, a listing after DELE), so STAT, LIST and UIDL of a warm mailbox never build
 * 100 000 objects.
 */
export class Listing {
  private parsed: ListingRecord[] | undefined;

  constructor(
    readonly count: number,
    readonly octets: number,
    /** "msn size\r\n" for every message, msn from 1. */
    readonly listBody: Buffer,
    /** "msn uidl\r\n" for every message. */
    readonly uidlBody: Buffer,
    /** Sizes found wrong when messages were read, by base name; kept across rescans. */
    readonly fixes: ReadonlyMap<string, number>,
    private namesBody: Buffer | null,
    records?: ListingRecord[],
  ) {
    this.parsed = records;
  }

  /** From freshly scanned records (the slow path). */
  static fromRecords(records: ListingRecord[], fixes: ReadonlyMap<string, number>): Listing {
    // An empty mailbox (what most idle sessions hold) shares its parts: memory per connection matters.
    if (records.length === 0 && fixes.size === 0) return new Listing(0, 0, NOTHING, NOTHING, NO_FIXES, null, records);
    let octets = 0;
    const list: string[] = [];
    const uidl: string[] = [];
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      octets += r.size;
      list.push(`${i + 1} ${r.size}\r\n`);
      uidl.push(`${i + 1} ${r.uidl}\r\n`);
    }
    return new Listing(
      records.length,
      octets,
      Buffer.from(list.join(''), 'latin1'),
      Buffer.from(uidl.join(''), 'latin1'),
      fixes,
      null,
      records,
    );
  }

  /** Every message, in snapshot order (parsed from the file on first use). */
  records(): ListingRecord[] {
    if (this.parsed !== undefined) return this.parsed;
    const names = (this.namesBody ?? Buffer.alloc(0)).toString('utf8');
    this.namesBody = null;
    const list = this.listBody.toString('latin1');
    const uidl = this.uidlBody.toString('latin1');
    const out: ListingRecord[] = new Array(this.count);
    let n = 0;
    let l = 0;
    let u = 0;
    for (let i = 0; i < this.count; i++) {
      const nEnd = names.indexOf('\n', n);
      const lEnd = list.indexOf('\r\n', l);
      const uEnd = uidl.indexOf('\r\n', u);
      if (nEnd === -1 || lEnd === -1 || uEnd === -1) throw new Error('postern-listing: truncated');
      const estimated = names.charCodeAt(n) === 0x3f; // '?'
      const at = estimated ? n + 1 : n;
      const folder: Folder = names.charCodeAt(at) === 0x63 ? 'cur' : 'new';
      out[i] = {
        folder,
        name: names.slice(at + 1, nEnd),
        size: Number(list.slice(list.indexOf(' ', l) + 1, lEnd)),
        uidl: uidl.slice(uidl.indexOf(' ', u) + 1, uEnd),
        ...(estimated ? { estimated } : {}),
      };
      n = nEnd + 1;
      l = lEnd + 2;
      u = uEnd + 2;
    }
    this.parsed = out;
    return out;
  }

  /** The file's bytes, with these stamps. */
  encode(stamps: Stamps, trusted: boolean): Buffer {
    const names: string[] = [];
    for (const r of this.records()) names.push(`${r.estimated ? '?' : ''}${r.folder === 'cur' ? 'c' : 'n'}${r.name}\n`);
    const namesBuf = Buffer.from(names.join(''), 'utf8');
    const head: string[] = [
      MAGIC,
      `stamps ${trusted ? 1 : 0} ${stamps.newDir} ${stamps.curDir} ${stamps.uidlist}`,
      `count ${this.count} ${this.octets}`,
    ];
    for (const [base, size] of this.fixes) head.push(`fix ${base} ${size}`);
    head.push(`list ${this.listBody.length}`);
    return Buffer.concat([
      Buffer.from(`${head.join('\n')}\n`, 'utf8'),
      this.listBody,
      Buffer.from(`uidl ${this.uidlBody.length}\n`, 'latin1'),
      this.uidlBody,
      Buffer.from(`names ${namesBuf.length}\n`, 'latin1'),
      namesBuf,
    ]);
  }
}

export interface StoredListing {
  readonly stamps: Stamps;
  readonly trusted: boolean;
  readonly listing: Listing;
}

/** Reads the listing file; null when it is missing or not understood. Other read errors are thrown. */
export async function readListing(maildir: string): Promise<StoredListing | null> {
  let buf: Buffer;
  try {
    buf = await readFile(join(maildir, LISTING_FILE));
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
  try {
    return decode(buf);
  } catch {
    return null;
  }
}

/** readListing with synchronous calls (one open, fstat, read, close; no thread-pool round trips). */
export function readListingSync(maildir: string): StoredListing | null {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(join(maildir, LISTING_FILE));
  } catch {
    return null; // missing or unreadable: the directories are read instead
  }
  try {
    return decode(buf);
  } catch {
    return null;
  }
}

function decode(buf: Buffer): StoredListing | null {
  let at = 0;
  const line = (): string => {
    const end = buf.indexOf(0x0a, at);
    if (end === -1) throw new Error('truncated');
    const s = buf.toString('utf8', at, end);
    at = end + 1;
    return s;
  };
  const section = (name: string): Buffer => {
    const [key, len] = line().split(' ');
    const n = Number(len);
    if (key !== name || !Number.isSafeInteger(n) || n < 0 || at + n > buf.length) throw new Error('bad section');
    const body = buf.subarray(at, at + n);
    at += n;
    return body;
  };
  if (line() !== MAGIC) return null;
  const st = line().split(' ');
  if (st.length !== 5 || st[0] !== 'stamps') return null;
  const stamps: Stamps = { newDir: st[2], curDir: st[3], uidlist: st[4] };
  const ct = line().split(' ');
  const count = Number(ct[1]);
  const octets = Number(ct[2]);
  if (ct[0] !== 'count' || !Number.isSafeInteger(count) || !Number.isSafeInteger(octets)) return null;
  const fixes = new Map<string, number>();
  while (buf.subarray(at, at + 4).toString('latin1') === 'fix ') {
    const f = line();
    const sp = f.lastIndexOf(' ');
    const size = Number(f.slice(sp + 1));
    if (sp > 4 && Number.isSafeInteger(size) && size >= 0) fixes.set(f.slice(4, sp), size);
  }
  const listBody = section('list');
  const uidlBody = section('uidl');
  const namesBody = section('names');
  if (at !== buf.length) return null;
  return { stamps, trusted: st[1] === '1', listing: new Listing(count, octets, listBody, uidlBody, fixes, namesBody) };
}

/** Replaces the listing file atomically. A cache: not fsynced; a failure leaves the old file or none. */
export async function writeListing(maildir: string, listing: Listing, stamps: Stamps, trusted: boolean): Promise<void> {
  // A file name with a line break (no Maildir writer makes one) cannot be written down: no listing then.
  if (listing.records().some((r) => r.name.includes('\n'))) return;
  await writeFileAtomic(join(maildir, LISTING_FILE), listing.encode(stamps, trusted), { durable: false });
}

/** Base name of a record (the id of its message). */
export function baseOfRecord(r: ListingRecord): string {
  return baseOf(r.name);
}
