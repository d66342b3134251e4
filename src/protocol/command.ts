import type { Buffer } from 'node:buffer';

/**
 * RFC 1939 §3: a command is a case-insensitive keyword, possibly followed by arguments, separated by single
 * spaces. Keywords are 3 or 4 characters in RFC 1939; RFC 2449 §3 allows extensions, so up to 8 are accepted here
 * and the command table decides which exist.
 */
export interface ParsedCommand {
  /** The keyword, upper-cased (ASCII letters and digits only). */
  verb: string;
  /** `rest` split on single spaces; [] when there is nothing after the keyword. "A  B" gives ['A', '', 'B']. */
  args: string[];
  /** Everything after the keyword and one space, unsplit, decoded as UTF-8 (RFC 6856); '' when absent. PASS takes
   * this as the password, spaces included. Bytes that are not valid UTF-8 become U+FFFD. */
  rest: string;
}

export const MAX_KEYWORD_LENGTH = 8;

const SPACE = 0x20;
const KEYWORD = /^[A-Za-z0-9]+$/;
const DIGITS = /^[0-9]+$/;
const MAX_NUMBER = 2 ** 31 - 1;

/** Parses one command line, given without its CRLF. */
export function parseCommand(line: Buffer): ParsedCommand | { error: string } {
  if (line.length === 0) return { error: 'empty command line' };
  if (line.includes(0)) return { error: 'NUL in command line' };
  const sp = line.indexOf(SPACE);
  const keywordEnd = sp === -1 ? line.length : sp;
  if (keywordEnd === 0) return { error: 'command line must start with a keyword' };
  if (keywordEnd > MAX_KEYWORD_LENGTH) return { error: 'command keyword too long' };
  const keyword = line.toString('latin1', 0, keywordEnd);
  if (!KEYWORD.test(keyword)) return { error: 'command keyword must be letters and digits' };
  const rest = sp === -1 ? '' : line.toString('utf8', sp + 1);
  return { verb: keyword.toUpperCase(), args: rest === '' ? [] : rest.split(' '), rest };
}

function parseDecimal(arg: string | undefined, min: number): number | null {
  if (arg === undefined || !DIGITS.test(arg)) return null;
  let z = 0;
  while (z < arg.length - 1 && arg.charCodeAt(z) === 0x30) z++; // leading zeros are allowed and ignored
  if (arg.length - z > 10) return null; // > 2^31 - 1 for sure; keeps Number() exact
  const v = Number(arg.slice(z));
  return v >= min && v <= MAX_NUMBER ? v : null;
}

/** A message number (msn): ASCII decimal digits only, 1 ≤ n ≤ 2^31 - 1; anything else gives null. */
export function parseMsn(arg: string | undefined): number | null {
  return parseDecimal(arg, 1);
}

/** A count such as TOP's number of lines: ASCII decimal digits only, 0 ≤ n ≤ 2^31 - 1; anything else gives null. */
export function parseNonNegative(arg: string | undefined): number | null {
  return parseDecimal(arg, 0);
}
