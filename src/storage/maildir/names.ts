/**
 * Maildir file names (https://cr.yp.to/proto/maildir.html and Dovecot's extensions).
 *
 *   <base>[:2,<flags>]          the info part after ':' (or '!' where ':' is not allowed) changes when a
 *                               program sets flags or moves the file from new/ to cur/; the base never does.
 *   <unique>[,S=<n>][,W=<n>]    Dovecot appends the physical size (S) and the virtual size (W, CRLF line
 *                               endings: what a POP3 client receives) to the base.
 *
 * Postfix writes `<sec>.V<dev>I<ino>M<usec>.<host>` (older: `<sec>.V<dev>I<ino>.<host>`), Dovecot and Postern
 * `<sec>.M<usec>P<pid>Q<n>.<host>`; qmail `<sec>.<pid>.<host>`. All start with the delivery time, which gives
 * the snapshot its oldest-first order.
 */
import { createHash } from 'node:crypto';
import { isValidUidl } from '../../mail/uidl.ts';

/** The base name: the file name without the info part (':2,S', '!2,S'). */
export function baseOf(name: string): string {
  const colon = name.indexOf(':');
  if (colon !== -1) return name.slice(0, colon);
  const bang = name.indexOf('!2,');
  return bang === -1 ? name : name.slice(0, bang);
}

export interface ParsedName {
  readonly base: string;
  /** Leading unix time of the name; names without one sort last. */
  readonly sec: number;
  /** Microseconds from an `M<usec>` field of the second dot-component, else 0. */
  readonly usec: number;
  /** `,S=` physical size, if present. */
  readonly physical?: number;
  /** `,W=` virtual (transmitted) size, if present. */
  readonly virtual?: number;
}

const NO_TIME = Number.MAX_SAFE_INTEGER;

function digitsAt(s: string, from: number): number {
  let end = from;
  while (end < s.length) {
    const c = s.charCodeAt(end);
    if (c < 0x30 || c > 0x39) break;
    end++;
  }
  if (end === from || end - from > 15) return -1;
  return Number(s.slice(from, end));
}

/** Parses a base name (call baseOf first). Hand-written rather than a regex: it runs 100 000 times per open. */
export function parseBase(base: string): ParsedName {
  let sec = NO_TIME;
  let usec = 0;
  const lead = digitsAt(base, 0);
  if (lead !== -1) sec = lead;
  const firstDot = base.indexOf('.');
  if (firstDot !== -1) {
    let compEnd = base.indexOf('.', firstDot + 1);
    if (compEnd === -1) compEnd = base.length;
    const m = base.indexOf('M', firstDot + 1);
    if (m !== -1 && m < compEnd) {
      const n = digitsAt(base, m + 1);
      if (n !== -1) usec = n;
    }
  }
  let physical: number | undefined;
  let virtual: number | undefined;
  let comma = base.indexOf(',');
  while (comma !== -1) {
    const next = base.indexOf(',', comma + 1);
    const field = base.slice(comma + 1, next === -1 ? base.length : next);
    if (field.length > 2 && field[1] === '=' && (field[0] === 'S' || field[0] === 'W')) {
      const n = digitsAt(field, 2);
      if (n !== -1 && String(n).length === field.length - 2) {
        if (field[0] === 'S') physical = n;
        else virtual = n;
      }
    }
    comma = next;
  }
  return { base, sec, usec, physical, virtual };
}

/** Oldest first: leading time, then microseconds, then the base name (code-unit order, locale-free). */
export function compareParsed(a: ParsedName, b: ParsedName): number {
  if (a.sec !== b.sec) return a.sec - b.sec;
  if (a.usec !== b.usec) return a.usec - b.usec;
  return a.base < b.base ? -1 : a.base > b.base ? 1 : 0;
}

/** The UIDL a base name gets when nothing better is known: its unique part, or a digest of the whole base. */
export function uidlOfBase(base: string): string {
  const comma = base.indexOf(',');
  const head = comma === -1 ? base : base.slice(0, comma);
  return isValidUidl(head) ? head : hashedUidl(base);
}

/** 43 characters of base64url: always a valid UIDL, and a function of the base name alone. */
export function hashedUidl(base: string): string {
  return createHash('sha256').update(base).digest('base64url');
}
