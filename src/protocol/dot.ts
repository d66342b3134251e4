import { Buffer } from 'node:buffer';

/**
 * RFC 1939 §3 multi-line responses: the server's streaming encoder (CRLF repair, dot-stuffing, TOP cut, in one
 * pass) and the client's streaming decoder (dot-unstuffing, terminator detection).
 *
 * The transmitted form of stored bytes is defined in mail/size.ts (SizeCounter) and must agree with DotEncoder:
 * bare LF becomes CRLF, a lone CR is data, a missing final line ending is added. A line starts at the start of
 * the message and after every LF; a CR alone does not end a line.
 */

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;
const EMPTY = Buffer.alloc(0);
const LF_DOT = Buffer.from('\n.', 'latin1');

/** State of the current line, tracked for TOP only: nothing seen yet, exactly one CR seen, anything else. */
const LINE_EMPTY = 0;
const LINE_CR = 1;
const LINE_TEXT = 2;

function lineStateAfter(state: number, chunk: Buffer, from: number, to: number): number {
  const len = to - from;
  if (len === 0) return state;
  if (len === 1 && state === LINE_EMPTY && chunk[from] === CR) return LINE_CR;
  return LINE_TEXT;
}

export class DotEncoder {
  private prev = -1; // last input byte sent, -1 before any
  private readonly top: boolean;
  private inHeaders = true;
  private linesLeft: number;
  private lineState = LINE_EMPTY;
  private cut = false;
  private ended = false;
  private readonly inserts: number[] = [];

  /** topLines: RFC 1939 §7 TOP: the headers, the empty line after them, then that many lines of the body. */
  constructor(opts: { topLines?: number } = {}) {
    const t = opts.topLines;
    if (t !== undefined && (!Number.isSafeInteger(t) || t < 0)) {
      throw new RangeError(`topLines must be a non-negative integer, got ${t}`);
    }
    this.top = t !== undefined;
    this.linesLeft = t ?? 0;
  }

  /** True once TOP's cut is reached: further writes return empty and the caller can stop reading the message. */
  get finished(): boolean {
    return this.cut;
  }

  /**
   * Encodes one chunk of stored bytes into wire bytes: bare LF → CRLF, lone CR kept as data, one more '.' in
   * front of every line that starts with '.'. Returns the input chunk itself (or a view of it, when TOP cuts)
   * when nothing has to be inserted; otherwise one new buffer. Work is per chunk, not per line: line ends are
   * found with indexOf and bytes are copied only when something must be inserted.
   */
  write(chunk: Buffer): Buffer {
    if (this.ended) throw new Error('DotEncoder.write() after end()');
    if (this.cut) return EMPTY;
    const n = chunk.length;
    if (n === 0) return chunk;
    const prev = this.prev;
    if (!this.top && chunk.indexOf(CR) === -1 && !(prev === CR && chunk[0] === LF)) {
      // Bare-LF text (as Postfix stores it): every LF gets a CR, every line-start dot another dot. V8's native
      // string replacement does this about twice as fast as the insert loop below (latin1 maps bytes 1:1).
      this.prev = chunk[n - 1];
      const lead = (prev === -1 || prev === LF) && chunk[0] === DOT ? 1 : 0;
      if (lead === 0 && chunk.indexOf(LF) === -1) return chunk;
      let text = chunk.toString('latin1');
      // Lines that start with a dot are rare: look for one natively (memmem) before paying a replacement pass.
      if (chunk.indexOf(LF_DOT) !== -1) text = text.replaceAll('\n.', '\n..');
      text = text.replaceAll('\n', '\r\n');
      const out = Buffer.allocUnsafe(lead + text.length);
      if (lead === 1) out[0] = DOT;
      out.write(text, lead, 'latin1');
      return out;
    }
    // Positions in `chunk` before which one byte is inserted: a CR if chunk[p] is LF, a '.' if it is '.'.
    const inserts = this.inserts;
    inserts.length = 0;
    if ((prev === -1 || prev === LF) && chunk[0] === DOT) inserts.push(0);
    let limit = n;
    let i = chunk.indexOf(LF);
    if (!this.top) {
      while (i !== -1) {
        if ((i === 0 ? prev : chunk[i - 1]) !== CR) inserts.push(i);
        const next = i + 1;
        if (next === n) break;
        if (chunk[next] === DOT) inserts.push(next);
        i = chunk.indexOf(LF, next);
      }
    } else {
      let lineFrom = 0;
      let state = this.lineState;
      while (i !== -1) {
        if ((i === 0 ? prev : chunk[i - 1]) !== CR) inserts.push(i);
        state = lineStateAfter(state, chunk, lineFrom, i);
        const next = i + 1;
        if (this.lineEnded(state !== LINE_TEXT)) {
          limit = next;
          this.cut = true;
          break;
        }
        state = LINE_EMPTY;
        lineFrom = next;
        if (next === n) break;
        if (chunk[next] === DOT) inserts.push(next);
        i = chunk.indexOf(LF, next);
      }
      if (!this.cut) this.lineState = lineStateAfter(state, chunk, lineFrom, n);
    }
    this.prev = chunk[limit - 1];

    const k = inserts.length;
    if (k === 0) return limit === n ? chunk : chunk.subarray(0, limit);
    const out = Buffer.allocUnsafe(limit + k);
    let from = 0;
    let o = 0;
    for (let x = 0; x < k; x++) {
      const p = inserts[x];
      if (p - from < 64) {
        // A native copy call costs more than a short loop.
        for (let q = from; q < p; q++) out[o++] = chunk[q];
      } else {
        o += chunk.copy(out, o, from, p);
      }
      out[o++] = chunk[p] === LF ? CR : DOT;
      from = p;
    }
    chunk.copy(out, o, from, limit);
    return out;
  }

  /**
   * Final line-ending repair, exactly as SizeCounter defines it (LF if the text sent ended in CR, CRLF if it ended
   * in anything else, nothing if it was empty or ended in LF), followed by the terminator ".\r\n".
   */
  end(): Buffer {
    if (this.ended) throw new Error('DotEncoder.end() called twice');
    this.ended = true;
    const p = this.prev;
    if (p === -1 || p === LF) return Buffer.from('.\r\n', 'latin1');
    if (p === CR) return Buffer.from('\n.\r\n', 'latin1');
    return Buffer.from('\r\n.\r\n', 'latin1');
  }

  /** TOP bookkeeping at the end of a line; true when the output must stop after this line. */
  private lineEnded(empty: boolean): boolean {
    if (this.inHeaders) {
      // The header section ends at the first empty line (RFC 5322 §2.1); a line of just CR counts as empty.
      if (!empty) return false;
      this.inHeaders = false;
      return this.linesLeft === 0;
    }
    this.linesLeft--;
    return this.linesLeft === 0;
  }
}

const AT_LINE_START = 0;
const IN_LINE = 1;
const SAW_DOT = 2; // '.' at the start of a line, held back
const SAW_DOT_CR = 3; // ".\r" at the start of a line, held back
const DONE = 4;

export class DotDecoder {
  private state = AT_LINE_START;

  /** True once the terminator line has been seen. */
  get done(): boolean {
    return this.state === DONE;
  }

  /**
   * Feeds bytes that follow the +OK line of a multi-line reply (the first byte starts the first line). Returns
   * the decoded body bytes of this chunk, and once the terminator line ".\r\n" has been seen, done = true and
   * `rest` = the bytes after it (they belong to the next reply). RFC 1939 §3: a line starting with '.' followed
   * by anything but CRLF loses that '.'; ".\r\n" ends the reply. CRLF and all other bytes pass untouched
   * (binary safe, no string decoding). A line starts after any LF, so a terminator after a bare LF from a broken
   * server is still seen, but only ".\r\n" terminates (".\n" is a line holding a stuffed '.'). At most the two
   * bytes ".\r" are held back between calls. `data` may be a view of `chunk`. push() after done throws.
   */
  push(chunk: Buffer): { data: Buffer; done: boolean; rest: Buffer } {
    if (this.state === DONE) throw new Error('DotDecoder.push() after the terminator');
    const n = chunk.length;
    const pieces: Buffer[] = [];
    let state = this.state;
    let from = 0; // start of the bytes not yet placed in `pieces`
    let i = 0;
    while (i < n) {
      if (state === IN_LINE) {
        const lf = chunk.indexOf(LF, i);
        if (lf === -1) break;
        i = lf + 1;
        state = AT_LINE_START;
        continue;
      }
      const b = chunk[i];
      if (state === AT_LINE_START) {
        if (b === DOT) {
          if (i > from) pieces.push(chunk.subarray(from, i));
          i++;
          from = i; // the dot is either stuffing or part of the terminator: never data
          state = SAW_DOT;
        } else {
          state = IN_LINE;
        }
      } else if (state === SAW_DOT) {
        if (b === CR) {
          i++;
          from = i; // hold the CR back
          state = SAW_DOT_CR;
        } else {
          state = IN_LINE; // stuffed dot dropped; b is data
        }
      } else {
        // SAW_DOT_CR
        if (b === LF) {
          this.state = DONE;
          return { data: join(pieces), done: true, rest: chunk.subarray(i + 1) };
        }
        // ".\r" + something else: the dot was stuffing, the CR is data.
        if (i > 0) from = i - 1;
        else pieces.push(Buffer.from([CR]));
        state = IN_LINE;
      }
    }
    this.state = state;
    if (from === 0 && pieces.length === 0) return { data: chunk, done: false, rest: EMPTY };
    if (from < n) pieces.push(chunk.subarray(from, n));
    return { data: join(pieces), done: false, rest: EMPTY };
  }
}

function join(pieces: Buffer[]): Buffer {
  if (pieces.length === 0) return EMPTY;
  if (pieces.length === 1) return pieces[0];
  return Buffer.concat(pieces);
}
