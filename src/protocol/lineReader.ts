import { Buffer } from 'node:buffer';

const LF = 0x0a;
const CR = 0x0d;
const EMPTY = Buffer.alloc(0);

export type LineResult = { kind: 'line'; line: Buffer } | { kind: 'toolong' };

/**
 * Splits a byte stream into lines with a hard cap on line length (never `readline`: a peer that sends an endless
 * line must not be able to grow our memory). RFC 1939 §3 ends lines with CRLF; a bare LF is accepted as well.
 *
 * Memory: the incomplete line at the end of the buffer is never allowed to grow beyond maxLine + 1 bytes (the + 1
 * is a CR that may still turn out to be the line's ending). As soon as it is known to be too long it is dropped
 * and the rest of it is discarded as it arrives, without being buffered. Complete lines stay buffered until next()
 * takes them, so a caller that stops calling next() must also stop reading (`buffered` tells how much is held).
 */
export class LineReader {
  readonly maxLine: number;
  // Buffered bytes are buf[start, end). `buf` is either a chunk adopted as is (owned = false: never written
  // into) or our own growable buffer (owned = true).
  private buf: Buffer = EMPTY;
  private start = 0;
  private end = 0;
  private owned = false;
  /** Bytes at the end of the buffer after its last LF: the incomplete line. */
  private tail = 0;
  /** Inside a too-long line whose ending has not arrived yet: drop bytes up to and including the next LF. */
  private discarding = false;
  /** Stream offset of buf[start], counting only bytes that were kept. */
  private consumed = 0;
  /** Stream offsets (as `consumed` counts them) where a too-long line was dropped, in order. */
  private readonly tooLongAt: number[] = [];
  /** Report a too-long line once its end has arrived, not as soon as it is known to be too long. */
  private readonly reportAtEnd: boolean;

  /**
   * `tooLong: 'at-end'` reports a too-long line only once its LF has arrived (a server answers one -ERR per
   * line, after the line, as for any other bad command); the default reports it as soon as it is known.
   */
  constructor(opts: { maxLine: number; tooLong?: 'early' | 'at-end' }) {
    if (!Number.isSafeInteger(opts.maxLine) || opts.maxLine < 0) {
      throw new RangeError(`maxLine must be a non-negative integer, got ${opts.maxLine}`);
    }
    this.maxLine = opts.maxLine;
    this.reportAtEnd = opts.tooLong === 'at-end';
  }

  /** Bytes held and not yet returned by next() or takeRest(). */
  get buffered(): number {
    return this.end - this.start;
  }

  push(chunk: Buffer): void {
    let c = chunk;
    if (this.discarding) {
      const lf = c.indexOf(LF);
      if (lf === -1) return;
      this.discarding = false;
      // Nothing was kept while discarding, so the line's place in the kept stream is still the buffer's end.
      if (this.reportAtEnd) this.tooLongAt.push(this.consumed + this.end - this.start);
      c = c.subarray(lf + 1);
    }
    const n = c.length;
    if (n === 0) return;
    const lastLf = c.lastIndexOf(LF);
    const newTail = lastLf === -1 ? this.tail + n : n - lastLf - 1;
    if (this.tailTooLong(newTail, c[n - 1])) {
      // Keep the complete lines, drop the incomplete one and remember where it was.
      if (lastLf === -1) this.end -= this.tail;
      else this.append(c.subarray(0, lastLf + 1));
      this.tail = 0;
      if (!this.reportAtEnd) this.tooLongAt.push(this.consumed + this.end - this.start);
      this.discarding = true;
      if (this.start === this.end) this.clear();
      return;
    }
    this.append(c);
    this.tail = newTail;
  }

  /**
   * Next complete line without its line ending (a bare LF also ends a line; a CR right before the LF is
   * stripped, any other CR is data), or null when no complete line is buffered. A line longer than maxLine
   * yields {kind:'toolong'} exactly once: as soon as it is known to be too long, even before its LF arrives,
   * or (`tooLong: 'at-end'`) once its LF has arrived.
   * The returned line is a copy the caller may keep.
   */
  next(): LineResult | null {
    if (this.tooLongAt.length > 0 && this.tooLongAt[0] === this.consumed) {
      this.tooLongAt.shift();
      return { kind: 'toolong' };
    }
    if (this.end - this.start === this.tail) return null; // no LF buffered
    const buf = this.buf;
    const from = this.start;
    // An LF lies in [start, end) (checked above), so indexOf cannot run past `end` into stale bytes.
    const lf = buf.indexOf(LF, from);
    let e = lf;
    if (e > from && buf[e - 1] === CR) e--;
    const result: LineResult =
      e - from > this.maxLine ? { kind: 'toolong' } : { kind: 'line', line: Buffer.from(buf.subarray(from, e)) };
    this.consumed += lf + 1 - from;
    this.start = lf + 1;
    if (this.start === this.end) this.clear();
    return result;
  }

  /**
   * Removes and returns every byte buffered but not yet returned as a line, and resets the reader to the start of
   * a line (a pending too-long report and the discarding of a too-long line's remainder are dropped too). Used to
   * discard what a client sent after STLS in the same packet (RFC 2595 §4: those bytes were not protected by TLS
   * and must never be run as commands), and by the client to hand the bytes after a +OK to the dot decoder.
   */
  takeRest(): Buffer {
    const rest = this.buf.subarray(this.start, this.end);
    this.consumed += rest.length;
    this.clear(); // we never touch that buffer again, so a view of it is safe to hand out
    this.tooLongAt.length = 0;
    this.discarding = false;
    return rest;
  }

  /** Whether an incomplete line of `len` bytes ending in byte `last` is already known to exceed maxLine. */
  private tailTooLong(len: number, last: number): boolean {
    const max = this.maxLine;
    return len > max + 1 || (len === max + 1 && last !== CR);
  }

  private clear(): void {
    this.buf = EMPTY;
    this.start = 0;
    this.end = 0;
    this.owned = false;
    this.tail = 0;
  }

  private append(c: Buffer): void {
    const size = this.end - this.start;
    if (size === 0) {
      // Common case: everything before was consumed. Adopt the chunk without copying.
      this.buf = c;
      this.start = 0;
      this.end = c.length;
      this.owned = false;
      return;
    }
    if (this.owned && this.end + c.length <= this.buf.length) {
      this.end += c.copy(this.buf, this.end);
      return;
    }
    const need = size + c.length;
    if (this.owned && need <= this.buf.length && this.start >= size) {
      // Compact in place; only when the consumed prefix is at least as large as what is moved, so the copying
      // stays linear in the bytes pushed.
      this.buf.copy(this.buf, 0, this.start, this.end);
    } else {
      const grown = Buffer.allocUnsafe(Math.max(need + (need >> 1), 256));
      this.buf.copy(grown, 0, this.start, this.end);
      this.buf = grown;
      this.owned = true;
    }
    this.start = 0;
    this.end = size + c.copy(this.buf, size);
  }
}
