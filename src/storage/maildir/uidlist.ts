/**
 * Dovecot's `dovecot-uidlist` (read only), so that users moving from Dovecot keep their POP3 UIDLs and their
 * clients do not download everything again. Formats (Dovecot src/lib-storage/index/maildir/maildir-uidlist.c):
 *
 *   version 1 (also Courier's courierimapuiddb):  header `1 <uidvalidity> <nextuid>`, entries `<uid> <filename>`
 *   version 3 (Dovecot 1.1+):                    header `3 V<uidvalidity> N<nextuid> [<key><value> ...]`,
 *                                                 entries `<uid> [<key><value> ...] :<filename>`
 *
 * Entry keys used here: `P` a POP3 UIDL that overrides the default format (empty: the base file name), `W` the
 * virtual size. Dovecot's default `pop3_uidl_format = %08Xu%08Xv` is the uid then the uidvalidity, each as
 * eight upper-case hex digits. Files are matched by base name (Dovecot does the same).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isNotFound } from './fsutil.ts';
import { baseOf } from './names.ts';

export const UIDLIST_FILE = 'dovecot-uidlist';

export interface UidlistEntry {
  readonly uid: number;
  /** Dovecot's POP3 UIDL for this message. */
  readonly uidl: string;
  /** Virtual size from a `W` field, if any. */
  readonly vsize?: number;
}

function hex8(n: number): string {
  return n.toString(16).toUpperCase().padStart(8, '0');
}

const U32 = 0xffffffff;

function parseU32(s: string): number {
  if (!/^[0-9]{1,10}$/.test(s)) return -1;
  const n = Number(s);
  return n <= U32 ? n : -1;
}

/** Parses the text of a dovecot-uidlist; null when the header is not understood. */
export function parseUidlist(text: string): Map<string, UidlistEntry> | null {
  const lines = text.split('\n');
  const header = lines[0].split(' ');
  let validity = -1;
  const version = header[0];
  if (version === '1') {
    validity = parseU32(header[1] ?? '');
  } else if (version === '3') {
    for (const f of header.slice(1)) if (f.startsWith('V')) validity = parseU32(f.slice(1));
  } else {
    return null;
  }
  if (validity <= 0) return null;

  const map = new Map<string, UidlistEntry>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    if (line === '') continue;
    const sp = line.indexOf(' ');
    if (sp === -1) continue;
    const uid = parseU32(line.slice(0, sp));
    if (uid <= 0) continue;
    let filename: string;
    let pop3: string | undefined;
    let vsize: number | undefined;
    if (version === '1') {
      filename = line.slice(sp + 1);
    } else {
      const colon = line.indexOf(' :', sp - 1);
      if (colon === -1) continue;
      filename = line.slice(colon + 2);
      for (const f of line.slice(sp + 1, colon).split(' ')) {
        if (f.startsWith('P')) pop3 = f.slice(1);
        else if (f.startsWith('W') && /^W[0-9]{1,15}$/.test(f)) vsize = Number(f.slice(1));
      }
    }
    if (filename === '') continue;
    const base = baseOf(filename);
    const uidl = pop3 === undefined ? hex8(uid) + hex8(validity) : pop3 === '' ? base : pop3;
    map.set(base, { uid, uidl, vsize });
  }
  return map;
}

/** Reads `dovecot-uidlist` from a Maildir; null when there is none or it cannot be understood. */
export async function loadUidlist(maildir: string): Promise<Map<string, UidlistEntry> | null> {
  let text: string;
  try {
    text = await readFile(join(maildir, UIDLIST_FILE), 'utf8');
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
  return parseUidlist(text);
}
