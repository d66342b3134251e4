/** Reading a reply's status line (RFC 1939 §3, RFC 2449 §8 response codes, RFC 5034 §4 SASL challenges). */
import { Pop3ProtocolError, Pop3ResponseError, splitRespCode } from './errors.ts';
import type { Pending } from './pipeline.ts';

/**
 * Longest status line accepted. RFC 2449 §4 caps responses at 512 octets; greetings and -ERR texts from real
 * servers sometimes exceed it, so allow some slack, but never an unbounded line.
 */
export const MAX_STATUS_LINE = 4096;
/** Longest line in a LIST/UIDL/CAPA body (a UIDL line is at most ~82 octets; CAPA lines are short too). */
export const MAX_LIST_LINE = 4096;

export type Status =
  | { type: 'ok'; text: string }
  | { type: 'err'; error: Pop3ResponseError }
  /** "+" SP base64 (or a bare "+" from lenient servers) during AUTH: the server wants the next client response. */
  | { type: 'challenge'; challenge: string };

/** What the status line `line` (`raw` decoded) says in reply to `head`; throws on anything else. */
export function parseStatus(head: Pending, line: string, raw: Buffer): Status {
  const ok = /^\+OK(?: |$)/i.test(line);
  if (head.kind.type === 'sasl' && !ok && line.startsWith('+')) {
    return { type: 'challenge', challenge: line.slice(1).trimStart() };
  }
  const err = !ok && /^-ERR(?: |$)/i.test(line);
  if (!ok && !err) throw new Pop3ProtocolError(`${head.verb}: unexpected reply ${JSON.stringify(clip(raw))}`);
  const text = line.slice(ok ? 3 : 4).replace(/^ /, '');
  if (ok) return { type: 'ok', text };
  const split = splitRespCode(text);
  return { type: 'err', error: new Pop3ResponseError(head.verb, split.text, split.respCode) };
}

/** "+OK", "+OK " or "+OK …" in any case (RFC 1939 §3: the status indicators are upper case; be lenient). */
export function isPlainOk(raw: Buffer): boolean {
  return (
    raw.length >= 3 &&
    raw[0] === 0x2b &&
    (raw[1] | 0x20) === 0x6f &&
    (raw[2] | 0x20) === 0x6b &&
    (raw.length === 3 || raw[3] === 0x20)
  );
}

/** The start of a line, for an error message. */
export function clip(b: Buffer): string {
  return b.subarray(0, 80).toString('latin1');
}
