/**
 * Streaming byte transforms for local delivery. Both work on whole chunks with O(1) state, so a message of any
 * size passes through in constant memory, and both give the same output whatever the chunking.
 */
import { Transform, type TransformCallback } from 'node:stream';

const CR = 0x0d;
const LF = 0x0a;

/**
 * CRLF → LF (the wire form of RFC 1939 to the local form of Maildir, mbox and MDAs, as fetchmail and mpop do),
 * synchronously, into one reusable output buffer that goes to `out` (one write) when full or at end(). A large
 * chunk is converted as a whole: read as a latin1 string (one byte, one char: byte-exact),
 * `replaceAll('\r\n', '\n')`, written back into the buffer: one native pass per chunk instead of an `indexOf` and
 * a copy per line, 1.6-1.7× the throughput of the per-line loop on 64 KiB chunks of 50-byte lines (CPU time).
 * A small chunk takes the per-line loop, which allocates nothing. A CR not followed by LF is data and is kept; a
 * CR at the end of a chunk waits for the next byte.
 */
export class CrlfToLfWriter {
  private buf: Buffer;
  private o = 0;
  private heldCr = false;

  constructor(
    private readonly out: (bytes: Buffer) => void,
    size = 256 * 1024,
  ) {
    this.buf = Buffer.allocUnsafe(Math.max(size, STRING_PASS_MIN));
  }

  /** Bytes waiting in the buffer. */
  get buffered(): number {
    return this.o;
  }

  push(chunk: Buffer): void {
    let n = chunk.length;
    if (n === 0) return;
    if (this.heldCr) {
      this.heldCr = false;
      if (chunk[0] !== LF) this.copy(CR_BYTE, 0, 1);
    }
    if (chunk[n - 1] === CR) {
      // Perhaps the first half of a CRLF: decided by the next byte.
      this.heldCr = true;
      n--;
    }
    if (n === 0) return;
    if (n < STRING_PASS_MIN) {
      this.pushBytes(chunk, n);
      return;
    }
    const text = chunk.toString('latin1', 0, n).replaceAll('\r\n', '\n');
    if (text.length === n) {
      this.copy(chunk, 0, n); // no CRLF in it
      return;
    }
    if (this.o + text.length > this.buf.length) {
      this.flush();
      if (text.length > this.buf.length) {
        this.out(Buffer.from(text, 'latin1'));
        return;
      }
    }
    this.o += this.buf.write(text, this.o, 'latin1');
  }

  /**
   * Bytes already in the stored form (LF line endings; e.g. from a RetrieveSink with crlfToLf, whose decoder
   * converted them): buffered as they are, nothing converted.
   */
  pushStored(chunk: Buffer): void {
    if (this.heldCr) {
      this.heldCr = false;
      this.copy(CR_BYTE, 0, 1);
    }
    this.copy(chunk, 0, chunk.length);
  }

  /**
   * CRLF → LF in chunk[0, n) in one byte loop straight into the buffer: no allocation, and no `indexOf` and copy
   * per line (their call overhead was most of the cost of a 4 KB message: 34-46 ms against 18-20 ms for 2 000 of
   * them in a fresh process).
   */
  private pushBytes(chunk: Buffer, n: number): void {
    if (this.o + n > this.buf.length) this.flush(); // n < STRING_PASS_MIN <= the buffer's size
    const b = this.buf;
    let o = this.o;
    const last = n - 1;
    for (let k = 0; k < n; k++) {
      const c = chunk[k];
      if (c === CR && k < last && chunk[k + 1] === LF) continue;
      b[o++] = c;
    }
    this.o = o;
  }

  /** Writes out everything (and a CR held back at the very end, which was data). */
  end(): void {
    if (this.heldCr) {
      this.heldCr = false;
      this.copy(CR_BYTE, 0, 1);
    }
    this.flush();
  }

  /** Forgets what is buffered (the message is being dropped). */
  reset(): void {
    this.o = 0;
    this.heldCr = false;
  }

  /** Writes out what is buffered (a CR held back stays held: it may be the start of a CRLF). */
  flush(): void {
    if (this.o === 0) return;
    const o = this.o;
    this.o = 0;
    this.out(this.buf.subarray(0, o));
  }

  private copy(src: Buffer, from: number, to: number): void {
    const len = to - from;
    if (len === 0) return;
    if (this.o + len > this.buf.length) {
      this.flush();
      if (len > this.buf.length) {
        this.out(src.subarray(from, to));
        return;
      }
    }
    if (len < 1024) {
      // Short pieces (a chunk of a small message, a held CR): a byte loop beats Buffer#copy, whose per-call
      // overhead is worth ~1 µs.
      const b = this.buf;
      let o = this.o;
      for (let k = from; k < to; k++) b[o++] = src[k];
      this.o = o;
    } else {
      this.o += src.copy(this.buf, this.o, from, to);
    }
  }
}

const CR_BYTE = Buffer.from([CR]);
/**
 * Chunks at least this long go through the string pass; shorter ones (the chunks of a small message) through
 * pushBytes, which allocates nothing: two strings per 4 KB message were 23 of the 54 MB allocated by a fetch of
 * 2 000 such messages, and grew V8's young generation (peak RSS +3 MB).
 */
const STRING_PASS_MIN = 8 * 1024;

/** CrlfToLfWriter as a Transform stream (the same bytes, whatever the chunking). */
export class CrlfToLf extends Transform {
  private readonly pending: Buffer[] = [];
  private readonly writer = new CrlfToLfWriter((b) => this.pending.push(Buffer.from(b)), 64 * 1024);

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.writer.push(chunk);
    this.release(cb, false);
  }

  override _flush(cb: TransformCallback): void {
    this.writer.end();
    this.release(cb, true);
  }

  private release(cb: TransformCallback, final: boolean): void {
    if (!final) this.writer.flush();
    const out = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending);
    this.pending.length = 0;
    cb(null, out.length > 0 ? out : undefined);
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
    cb(null, this.quote(chunk));
  }

  override _flush(cb: TransformCallback): void {
    const data = this.finish();
    cb(null, data.length > 0 ? data : undefined);
  }

  /** The quoted form of `chunk` (synchronous use, without the stream). */
  quote(chunk: Buffer): Buffer {
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
    const data = out.length === 1 ? out[0] : Buffer.concat(out);
    this.note(data);
    return data;
  }

  /** What is still held back at the end of the message. */
  finish(): Buffer {
    const data = this.heldBack(false);
    this.note(data);
    return data;
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
