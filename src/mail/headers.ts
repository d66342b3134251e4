/**
 * Trace headers added at final delivery (RFC 5321 §4.4: the delivering server adds Return-Path; Delivered-To
 * is the de-facto header of Postfix, Dovecot and qmail that names the final recipient and lets loops be seen).
 *
 * They are added while the message streams through: only the bytes before the first line end are ever held,
 * and at most PEEK_LIMIT of them, so the headers can use the message's own line ending (LMTP messages use
 * CRLF; a message piped to `postern deliver` by an MTA usually uses LF) and an mbox `From ` envelope line in
 * front of a piped message can be dropped.
 */
import { Transform, type TransformCallback } from 'node:stream';

export interface TraceHeaderOptions {
  /** The envelope sender for `Return-Path: <…>`; '' is the null sender `<>`; undefined adds no Return-Path. */
  readonly returnPath?: string;
  /** The recipient address for `Delivered-To:`; undefined adds none. */
  readonly deliveredTo?: string;
  /** Drop a leading mbox `From sender date` line (MTAs prepend one when piping to a command). */
  readonly stripFromLine?: boolean;
}

/** Bytes held while looking for the first line end; a longer first line is passed on untouched. */
const PEEK_LIMIT = 64 * 1024;

/**
 * Removes what could break a header line or the address syntax: control characters (CR and LF above all, which
 * would start a header of the sender's choosing) and angle brackets. Addresses come from the MTA's envelope,
 * which smtp-server has already parsed, so this only ever changes a hostile or broken address.
 */
export function headerSafeAddress(address: string): string {
  return address.replace(/[\x00-\x1f\x7f<>]/g, '');
}

export class TraceHeaders extends Transform {
  private peeked: Buffer[] = [];
  private peekedBytes = 0;
  private done = false;

  constructor(private readonly options: TraceHeaderOptions) {
    super();
  }

  /** The header lines with the given line ending (empty when none are wanted). */
  headerBlock(eol: string): string {
    const { returnPath, deliveredTo } = this.options;
    let out = '';
    if (returnPath !== undefined) out += `Return-Path: <${headerSafeAddress(returnPath)}>${eol}`;
    if (deliveredTo !== undefined) out += `Delivered-To: ${headerSafeAddress(deliveredTo)}${eol}`;
    return out;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (this.done) {
      callback(null, chunk);
      return;
    }
    this.peeked.push(chunk);
    this.peekedBytes += chunk.length;
    const lf = chunk.indexOf(0x0a);
    if (lf !== -1 || this.peekedBytes >= PEEK_LIMIT) this.release(lf !== -1);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (!this.done) this.release(false);
    callback();
  }

  /** Emits the headers and everything held so far; `sawLf` says whether the first line end is in there. */
  private release(sawLf: boolean): void {
    this.done = true;
    let held = this.peeked.length === 1 ? this.peeked[0] : Buffer.concat(this.peeked, this.peekedBytes);
    this.peeked = [];
    let eol = '\r\n';
    if (sawLf) {
      const lf = held.indexOf(0x0a);
      if (lf === 0 || held[lf - 1] !== 0x0d) eol = '\n';
      if (this.options.stripFromLine && held.subarray(0, 5).toString('latin1') === 'From ') {
        held = held.subarray(lf + 1);
      }
    }
    const block = this.headerBlock(eol);
    if (block !== '') this.push(Buffer.from(block, 'utf8'));
    if (held.length > 0) this.push(held);
  }
}
