import { Buffer } from 'node:buffer';
import { WASM_BASE64 } from './dotEncodeWasm.ts';
import { instantiateWasm } from './wasm.ts';

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

/**
 * The encoding loop of RETR in WebAssembly (dot-encode.wat beside this file: 16 bytes per step, one SIMD compare
 * finds the LFs), about ten times the rate of the JavaScript loop on LF-stored text. Stored bytes are copied into
 * its memory and the wire bytes out of it in stages of STAGE octets (the copies run at memory speed, the stage
 * stays in cache). One instance per process: encoding is synchronous, so calls never interleave.
 */
const STAGE = 256 * 1024;
const IN_AT = 64;
const OUT_AT = IN_AT + STAGE + 64;
const WASM_BYTES = OUT_AT + 2 * STAGE + 64; // dot-encode.wat: the output needs 2·n + 33 bytes, reads 32 past the input

interface WasmEncoder {
  encode(src: number, n: number, dst: number, prev: number): number;
  /** A view of the module's memory. */
  mem: Buffer;
}

let wasmEncoder: WasmEncoder | null | undefined;

/** The instance, made on first use; null where WebAssembly is unavailable (e.g. node --jitless). */
function loadWasm(): WasmEncoder | null {
  if (wasmEncoder !== undefined) return wasmEncoder;
  const w = instantiateWasm(WASM_BASE64, WASM_BYTES);
  wasmEncoder = w && { encode: w.exports.encode as WasmEncoder['encode'], mem: Buffer.from(w.buffer) };
  return wasmEncoder;
}

/** Which loop a DotEncoder made without options uses here. */
export function dotEncoderEngine(): 'wasm' | 'js' {
  return loadWasm() === null ? 'js' : 'wasm';
}

/** The most wire bytes `n` stored bytes can become in one write() (every byte doubled, one leading '.'). */
export function encodedBound(n: number): number {
  return 2 * n + 1;
}

export class DotEncoder {
  private prev = -1; // last input byte sent, -1 before any
  private readonly top: boolean;
  private readonly wasm: WasmEncoder | null;
  private inHeaders = true;
  private linesLeft: number;
  private lineState = LINE_EMPTY;
  private cut = false;
  private ended = false;
  private readonly inserts: number[] = [];

  /**
   * topLines: RFC 1939 §7 TOP: the headers, the empty line after them, then that many lines of the body.
   * engine: 'js' uses the JavaScript loop even where the WebAssembly one is available (the two must give the same
   * bytes; the tests compare them); TOP always uses it (it stops at a line count, and reads little).
   */
  constructor(opts: { topLines?: number; engine?: 'wasm' | 'js' } = {}) {
    const t = opts.topLines;
    if (t !== undefined && (!Number.isSafeInteger(t) || t < 0)) {
      throw new RangeError(`topLines must be a non-negative integer, got ${t}`);
    }
    this.top = t !== undefined;
    this.linesLeft = t ?? 0;
    this.wasm = this.top || opts.engine === 'js' ? null : loadWasm();
  }

  /** True once TOP's cut is reached: further writes return empty and the caller can stop reading the message. */
  get finished(): boolean {
    return this.cut;
  }

  /**
   * Encodes one chunk of stored bytes into wire bytes: bare LF → CRLF, lone CR kept as data, one more '.' in
   * front of every line that starts with '.'. Returns the input chunk itself (or a view of it, when TOP cuts)
   * when nothing has to be inserted; otherwise one new buffer of exactly the wire bytes.
   */
  write(chunk: Buffer): Buffer {
    if (this.ended) throw new Error('DotEncoder.write() after end()');
    if (this.cut) return EMPTY;
    const n = chunk.length;
    if (n === 0) return chunk;
    const w = this.wasm;
    if (w === null) return this.writeJs(chunk);
    if (n > STAGE) {
      const out = Buffer.allocUnsafe(encodedBound(n));
      const k = this.writeInto(chunk, out, 0);
      return k === n ? chunk : out.subarray(0, k);
    }
    const k = this.stage(w, chunk, 0, n);
    if (k === n) return chunk; // nothing inserted: the wire bytes are the stored ones
    const out = Buffer.allocUnsafe(k);
    w.mem.copy(out, 0, OUT_AT, OUT_AT + k);
    return out;
  }

  /**
   * write() into a buffer the caller owns (and may reuse once the bytes are sent): the wire bytes of `chunk` go
   * to `out` from `offset`, which needs room for encodedBound(chunk.length) bytes. Returns how many were written.
   */
  writeInto(chunk: Buffer, out: Buffer, offset: number): number {
    const w = this.wasm;
    if (w === null || this.ended || this.cut) {
      const wire = this.write(chunk);
      return wire.copy(out, offset);
    }
    if (out.length - offset < encodedBound(chunk.length)) throw new RangeError('DotEncoder.writeInto: no room');
    let o = offset;
    for (let from = 0; from < chunk.length; from += STAGE) {
      const to = Math.min(from + STAGE, chunk.length);
      const k = this.stage(w, chunk, from, to);
      o += w.mem.copy(out, o, OUT_AT, OUT_AT + k);
    }
    return o - offset;
  }

  /** chunk[from, to) (at most STAGE bytes) through the WebAssembly loop; the wire bytes are at OUT_AT. */
  private stage(w: WasmEncoder, chunk: Buffer, from: number, to: number): number {
    chunk.copy(w.mem, IN_AT, from, to);
    const k = w.encode(IN_AT, to - from, OUT_AT, this.prev);
    this.prev = chunk[to - 1];
    return k;
  }

  /** The JavaScript loop: TOP, and where WebAssembly is not available. */
  private writeJs(chunk: Buffer): Buffer {
    const n = chunk.length;
    const prev = this.prev;
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
    // The decoded bytes are nearly always one piece (a body up to its terminator, or all of the chunk): an array
    // is made only for a second piece (one per stuffed dot). An array per call was a sixth of what a fresh
    // process allocated reading 2 000 small messages with retrieve().
    let first: Buffer | undefined;
    let pieces: Buffer[] | undefined;
    let state = this.state;
    let from = 0; // start of the bytes not yet placed in `pieces`
    let i = 0;
    while (i < n) {
      if (state === IN_LINE) {
        // Only a line that starts with '.' needs a look: one native search for LF '.' skips every other line
        // (an indexOf per line was most of the decoding of a small message).
        const at = chunk.indexOf(LF_DOT, i);
        if (at === -1) {
          // No such line start in the rest of the chunk; a line may start right after it.
          if (chunk[n - 1] === LF) state = AT_LINE_START;
          break;
        }
        i = at + 1;
        state = AT_LINE_START;
        continue;
      }
      const b = chunk[i];
      if (state === AT_LINE_START) {
        if (b === DOT) {
          if (i > from) {
            const piece = chunk.subarray(from, i);
            if (first === undefined) first = piece;
            else if (pieces === undefined) pieces = [first, piece];
            else pieces.push(piece);
          }
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
          return { data: pieces ? Buffer.concat(pieces) : (first ?? EMPTY), done: true, rest: chunk.subarray(i + 1) };
        }
        // ".\r" + something else: the dot was stuffing, the CR is data.
        if (i > 0) from = i - 1;
        else if (first === undefined) first = Buffer.from([CR]);
        else if (pieces === undefined) pieces = [first, Buffer.from([CR])];
        else pieces.push(Buffer.from([CR]));
        state = IN_LINE;
      }
    }
    this.state = state;
    if (from === 0 && first === undefined) return { data: chunk, done: false, rest: EMPTY };
    if (from < n) {
      const piece = chunk.subarray(from, n);
      if (first === undefined) first = piece;
      else if (pieces === undefined) pieces = [first, piece];
      else pieces.push(piece);
    }
    return { data: pieces ? Buffer.concat(pieces) : (first ?? EMPTY), done: false, rest: EMPTY };
  }
}
