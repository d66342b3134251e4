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

export function parseListLine(verb: string, text: string): ListEntry {
  const m = /^(\d+) (\d+)/.exec(text);
  if (!m) throw new Pop3ProtocolError(`${verb}: unparsable scan listing ${JSON.stringify(text.slice(0, 80))}`);
  return { number: Number(m[1]), size: Number(m[2]) };
}

export function parseUidlLine(text: string): UidlEntry {
  const m = /^(\d+) (\S+)\s*$/.exec(text);
  if (!m || !isValidUidl(m[2]))
    throw new Pop3ProtocolError(`UIDL: unparsable unique-id listing ${JSON.stringify(text.slice(0, 80))}`);
  return { number: Number(m[1]), uidl: m[2] };
}
