/**
 * Streaming byte transforms for local delivery. Both work on whole chunks with O(1) state, so a message of any
 * size passes through in constant memory, and both give the same output whatever the chunking.
 */
import { Transform, type TransformCallback } from 'node:stream';

const CR = 0x0d;
const LF = 0x0a;

/**
 * CRLF → LF (the wire form of RFC 1939 to the local form of Maildir, mbox and MDAs, as fetchmail and mpop do).
 * A CR not followed by LF is data and is kept.
 */
export class CrlfToLf extends Transform {
  private heldCr = false;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const out: Buffer[] = [];
    let from = 0;
    if (this.heldCr) {
      this.heldCr = false;
      if (chunk.length > 0 && chunk[0] !== LF) out.push(Buffer.from([CR]));
    }
    let i = chunk.indexOf(CR);
    while (i !== -1) {
      if (i + 1 === chunk.length) {
        out.push(chunk.subarray(from, i));
        from = chunk.length;
        this.heldCr = true;
        break;
      }
      if (chunk[i + 1] === LF) {
        out.push(chunk.subarray(from, i));
        from = i + 1; // keep the LF
      }
      i = chunk.indexOf(CR, i + 1);
    }
    if (from < chunk.length) out.push(chunk.subarray(from));
    cb(null, out.length === 1 ? out[0] : Buffer.concat(out));
  }

  override _flush(cb: TransformCallback): void {
    cb(null, this.heldCr ? Buffer.from([CR]) : undefined);
  }
}

const FROM = Buffer.from('From ', 'latin1');
const GT = 0x3e;

/**
 * mboxrd quoting (the mbox variant where quoting is reversible): a line matching /^>*From / gets one more '>'.
 * Input has LF line endings. Tracks, at the start of each line, how many '>' and how much of "From " has been
 * seen, as numbers, so an endless run of '>' costs no memory.
 */
export class MboxrdQuote extends Transform {
  private atLineStart = true;
  private gts = 0; // '>' seen at the start of the current line, held back
  private matched = 0; // bytes of "From " matched after them, held back
  /** Last byte written, -1 before any (so the caller can add a missing final newline). */
  lastByte = -1;
  bytesOut = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const out: Buffer[] = [];
    let from = 0; // start of bytes not yet emitted
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      if (!this.atLineStart) {
        const lf = chunk.indexOf(LF, i);
        if (lf === -1) break;
        i = lf + 1;
        this.atLineStart = true;
        continue;
      }
      // At a line start (or inside the held-back prefix): bytes from `from` to i are already emitted.
      const b = chunk[i];
      if (this.matched === 0 && b === GT) {
        if (i > from) out.push(chunk.subarray(from, i));
        this.gts++;
        i++;
        from = i;
        continue;
      }
      if (b === FROM[this.matched]) {
        if (i > from) out.push(chunk.subarray(from, i));
        this.matched++;
        i++;
        from = i;
        if (this.matched === FROM.length) {
          out.push(this.heldBack(true));
          this.atLineStart = false;
        }
        continue;
      }
      // Not a From line: release what was held back unchanged.
      if (i > from) out.push(chunk.subarray(from, i));
      out.push(this.heldBack(false));
      from = i;
      this.atLineStart = false;
    }
    if (from < n) out.push(chunk.subarray(from));
    const data = Buffer.concat(out);
    this.note(data);
    cb(null, data);
  }

  override _flush(cb: TransformCallback): void {
    const data = this.heldBack(false);
    this.note(data);
    cb(null, data.length > 0 ? data : undefined);
  }

  private heldBack(quote: boolean): Buffer {
    const s = (quote ? '>' : '') + '>'.repeat(this.gts) + FROM.subarray(0, this.matched).toString('latin1');
    this.gts = 0;
    this.matched = 0;
    return Buffer.from(s, 'latin1');
  }

  private note(data: Buffer): void {
    if (data.length > 0) {
      this.lastByte = data[data.length - 1];
      this.bytesOut += data.length;
    }
  }
}
