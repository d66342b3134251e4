/** Checking message numbers and parsing the one-line listings of LIST and UIDL (RFC 1939 §5, §7). */
import { isValidUidl } from '../mail/uidl.ts';
import { Pop3ProtocolError } from './errors.ts';
import type { ListEntry, UidlEntry } from './types.ts';

/** RFC 1939 message numbers fit a signed 32-bit integer on every server we know. */
export const MAX_MSN = 2 ** 31 - 1;

export function checkMsn(n: number): string {
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_MSN) {
    throw new RangeError(`message number must be an integer from 1 to ${MAX_MSN}, got ${n}`);
  }
  return String(n);
}

// The listings are parsed by hand rather than with regular expressions: a mailbox of 100 000 messages is two
// listings of 100 000 lines, and a match array and its substrings per line were most of what listing cost a
// fresh `postern fetch` (issue 11). The grammar is the one the expressions had: /^(\d+) (\d+)/ for a scan
// listing (RFC 1939 §5: anything after the size is ignored), /^(\d+) (\S+)\s*$/ for a unique-id listing (§7).

/** The end of the run of ASCII digits from `at` (`at` itself when there is none). */
function digitsEnd(text: string, at: number): number {
  let i = at;
  for (; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) break;
  }
  return i;
}

/** The number written by text[from, to), all ASCII digits: summed as read, without a substring. */
function digitsValue(text: string, from: number, to: number): number {
  if (to - from > 15) return Number(text.slice(from, to)); // past 2^53 the sum could round differently
  let v = 0;
  for (let i = from; i < to; i++) v = v * 10 + (text.charCodeAt(i) - 0x30);
  return v;
}

export function parseListLine(verb: string, text: string): ListEntry {
  const n = digitsEnd(text, 0);
  const s = n > 0 && text.charCodeAt(n) === 0x20 ? digitsEnd(text, n + 1) : 0;
  if (s <= n + 1) throw new Pop3ProtocolError(`${verb}: unparsable scan listing ${JSON.stringify(text.slice(0, 80))}`);
  return { number: digitsValue(text, 0, n), size: digitsValue(text, n + 1, s) };
}

export function parseUidlLine(text: string): UidlEntry {
  const n = digitsEnd(text, 0);
  // The unique-id: printable ASCII (RFC 1939 §7); any other character ends it. What follows may only be white
  // space, as \s means it (trim() removes the same set); that is nearly always nothing, so no string is made.
  let end = n + 1;
  for (; end < text.length; end++) {
    const c = text.charCodeAt(end);
    if (c < 0x21 || c > 0x7e) break;
  }
  const tailOk = end === text.length || text.slice(end).trim() === '';
  const uidl = n > 0 && text.charCodeAt(n) === 0x20 && tailOk ? text.slice(n + 1, end) : '';
  if (!isValidUidl(uidl))
    throw new Pop3ProtocolError(`UIDL: unparsable unique-id listing ${JSON.stringify(text.slice(0, 80))}`);
  return { number: digitsValue(text, 0, n), uidl };
}
