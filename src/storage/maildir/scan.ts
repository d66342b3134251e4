/**
 * Lists a Maildir into a snapshot: one readdir of new/ and one of cur/, names parsed, sizes and UIDLs worked out
 * without opening message files whenever the names (`,W=`), dovecot-uidlist or the size cache allow.
 */

import type { Dirent } from 'node:fs';
import fs from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isValidUidl } from '../../mail/uidl.ts';
import { forEachLimit, isNotFound } from './fsutil.ts';
import { baseOf, compareParsed, hashedUidl, type ParsedName, parseBase, uidlOfBase } from './names.ts';
import { cacheable, loadSizeCache, measureFile, measureFileSync, newMeasureScratch, saveSizeCache } from './sizes.ts';
import { loadUidlist, type UidlistEntry } from './uidlist.ts';

export type Folder = 'new' | 'cur';

/** Where a message's file is now (the folder and the full name, info part included). */
export interface Location {
  folder: Folder;
  name: string;
}

export interface ScannedMessage extends Location {
  readonly parsed: ParsedName;
  size: number;
  uidl: string;
  /** True when the size came from postern-sizes (so a deletion should drop the entry). */
  cached: boolean;
  /** The file could not be read to count its size: `size` is its stored size from stat, a lower bound. */
  estimated?: boolean;
}

/** Synchronous stats per event-loop turn when validating the size cache (see sizeMessages). */
const STAT_SLICE = 512;
const READ_CONCURRENCY = 16;
/** Files measured synchronously between two turns of the event loop (sync option): a few ms at most. */
const READ_SLICE = 64;

async function listFolder(maildir: string, folder: Folder): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(join(maildir, folder), { withFileTypes: true });
  } catch (e) {
    if (isNotFound(e)) return [];
    throw e;
  }
  const names: string[] = [];
  // Dirent types come from readdir's d_type; Node falls back to lstat where the filesystem gives none.
  // Symlinks, directories and dotfiles are not messages.
  for (const d of entries) if (d.isFile() && d.name[0] !== '.') names.push(d.name);
  return names;
}

/**
 * Current location of every message by base name. new/ is read before cur/: a message moved new/ → cur/ in
 * between is then seen twice (the first sighting wins) rather than not at all.
 */
export async function locateAll(maildir: string): Promise<Map<string, Location>> {
  const found = new Map<string, Location>();
  for (const folder of ['new', 'cur'] as const) {
    for (const name of await listFolder(maildir, folder)) {
      const base = baseOf(name);
      if (!found.has(base)) found.set(base, { folder, name });
    }
  }
  return found;
}

export interface ScanOptions {
  /** Work out UIDLs (not needed for stats). */
  readonly uidls: boolean;
  /**
   * Told about a message file that exists but cannot be read (mode 000, EIO): it is listed with its stored
   * size from stat and flagged `estimated`, or left out when even stat fails, so one bad file never keeps the
   * rest of the mailbox from being served.
   */
  readonly onUnreadable?: (name: string, err: unknown, listed: boolean) => void;
  /**
   * Measure files without sizes in their names with synchronous calls, in slices between turns of the event
   * loop (storage.sync_small_reads: local disks), files over SYNC_MEASURE_MAX still asynchronously.
   */
  readonly sync?: boolean;
}

/** The snapshot of a Maildir, oldest first. Messages that vanish while it is being taken are left out. */
export async function scanMaildir(maildir: string, options: ScanOptions): Promise<ScannedMessage[]> {
  const located = await locateAll(maildir);
  let messages: ScannedMessage[] = [];
  for (const [base, loc] of located) {
    const parsed = parseBase(base);
    messages.push({
      folder: loc.folder,
      name: loc.name,
      parsed,
      size: parsed.virtual ?? -1,
      uidl: '',
      cached: false,
    });
  }
  messages.sort((a, b) => compareParsed(a.parsed, b.parsed));

  const unsized = messages.filter((m) => m.size < 0);
  let uidlist: Map<string, UidlistEntry> | null | undefined;
  if (unsized.length > 0 || options.uidls) uidlist = await loadUidlist(maildir);
  if (unsized.length > 0) {
    const gone = await sizeMessages(maildir, unsized, located, uidlist ?? null, options);
    if (gone.size > 0) messages = messages.filter((m) => !gone.has(m));
  }
  if (options.uidls) assignUidls(messages, uidlist ?? null);
  return messages;
}

/** Fills in sizes from dovecot-uidlist, the size cache, or by reading. Returns the messages that vanished. */
async function sizeMessages(
  maildir: string,
  unsized: ScannedMessage[],
  located: ReadonlyMap<string, Location>,
  uidlist: ReadonlyMap<string, UidlistEntry> | null,
  { onUnreadable, sync }: ScanOptions,
): Promise<Set<ScannedMessage>> {
  const cache = await loadSizeCache(maildir);
  let dirty = false;
  const toCheck: ScannedMessage[] = [];
  for (const m of unsized) {
    const vsize = uidlist?.get(m.parsed.base)?.vsize;
    if (vsize !== undefined) {
      m.size = vsize;
      continue;
    }
    const entry = cache.get(m.parsed.base);
    // A name that states its physical size (`,S=`) and agrees with the entry needs no stat: Maildir files are
    // written once, and a name that carries the size is not reused for other content.
    if (entry !== undefined && m.parsed.physical !== undefined && m.parsed.physical === entry.physical) {
      m.size = entry.size;
      m.cached = true;
      continue;
    }
    toCheck.push(m);
  }

  const missing: ScannedMessage[] = [];
  const toRead: ScannedMessage[] = [];
  // Validating cache entries costs one stat per message. Through the thread pool that is a round trip each
  // (seconds for 50 000 messages); a synchronous stat of a cached inode takes microseconds. So stat in
  // slices of STAT_SLICE and yield to the event loop between slices: other sessions wait at most one slice.
  for (let i = 0; i < toCheck.length; i += STAT_SLICE) {
    if (i > 0) await new Promise((r) => setImmediate(r));
    for (const m of toCheck.slice(i, i + STAT_SLICE)) {
      const entry = cache.get(m.parsed.base);
      if (entry === undefined) {
        toRead.push(m);
        continue;
      }
      let st: fs.Stats | undefined;
      try {
        st = fs.statSync(`${maildir}/${m.folder}/${m.name}`);
      } catch (e) {
        if (!isNotFound(e)) throw e;
        missing.push(m);
        continue;
      }
      if (st.size === entry.physical && st.mtimeMs === entry.mtimeMs) {
        m.size = entry.size;
        m.cached = true;
      } else {
        toRead.push(m);
      }
    }
  }

  const unreadable = new Set<ScannedMessage>();
  const scratch = sync ? newMeasureScratch() : undefined;
  const measure = async (m: ScannedMessage): Promise<boolean> => {
    const path = join(maildir, m.folder, m.name);
    try {
      const entry = (scratch && measureFileSync(path, scratch)) || (await measureFile(path));
      m.size = entry.size;
      if (cacheable(m.parsed.base)) {
        cache.set(m.parsed.base, entry);
        m.cached = true;
        dirty = true;
      }
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      // Unreadable (EACCES, EIO, …): list it with the size stat gives rather than fail the whole mailbox.
      let st: fs.Stats | undefined;
      try {
        st = fs.statSync(path);
      } catch (e2) {
        if (isNotFound(e2)) return false;
      }
      if (st === undefined) unreadable.add(m);
      else {
        m.size = st.size;
        m.estimated = true;
      }
      onUnreadable?.(m.name, e, st !== undefined);
      return true;
    }
  };
  if (sync) {
    for (let i = 0; i < toRead.length; i += READ_SLICE) {
      if (i > 0) await new Promise((r) => setImmediate(r));
      for (const m of toRead.slice(i, i + READ_SLICE)) if (!(await measure(m))) missing.push(m);
    }
  } else {
    await forEachLimit(toRead, READ_CONCURRENCY, async (m) => {
      if (!(await measure(m))) missing.push(m);
    });
  }

  // Moved (new/ → cur/, flags changed) or deleted by another program since the listing: look once more.
  const gone = new Set<ScannedMessage>();
  if (missing.length > 0) {
    const now = await locateAll(maildir);
    await forEachLimit(missing, READ_CONCURRENCY, async (m) => {
      const loc = now.get(m.parsed.base);
      if (loc !== undefined) {
        m.folder = loc.folder;
        m.name = loc.name;
        if (await measure(m)) return;
      }
      gone.add(m);
    });
  }

  for (const m of unreadable) gone.add(m);
  for (const base of cache.keys()) {
    if (!located.has(base)) {
      cache.delete(base);
      dirty = true;
    }
  }
  if (dirty) await saveSizeCache(maildir, cache).catch(() => {}); // next open re-reads; nothing is lost
  return gone;
}

/**
 * UIDLs: Dovecot's for messages its uidlist knows, else the unique part of the base name. A candidate shared by
 * two messages (a copied file with different size fields, a corrupt uidlist) is replaced by a digest of each
 * base name, for every message sharing it: a UIDL must never move to another message when one of them is
 * deleted, or a client that saw the first would skip the second for good.
 */
function assignUidls(messages: ScannedMessage[], uidlist: ReadonlyMap<string, UidlistEntry> | null): void {
  const seen = new Map<string, number>();
  for (const m of messages) {
    const fromDovecot = uidlist?.get(m.parsed.base)?.uidl;
    m.uidl = fromDovecot !== undefined && isValidUidl(fromDovecot) ? fromDovecot : uidlOfBase(m.parsed.base);
    seen.set(m.uidl, (seen.get(m.uidl) ?? 0) + 1);
  }
  for (const m of messages) {
    if ((seen.get(m.uidl) ?? 0) > 1) m.uidl = hashedUidl(m.parsed.base);
  }
}
