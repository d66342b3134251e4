/**
 * The body decoder of a RETR whose sink wants the stored form (RetrieveSink.crlfToLf): dot-unstuffing,
 * terminator detection and CRLF → LF in one pass, by a WebAssembly loop (dot-decode.wat beside this file:
 * 16 bytes per step with SIMD compares) where it is available, by DotDecoder plus a byte loop elsewhere.
 *
 * Output: exactly what DotDecoder's bytes give with every CR that is followed by LF removed (a CR before any
 * other byte is data), the form fetch's CrlfToLfWriter stores. Dot-unstuffing never puts a CR next to an LF
 * (a dropped '.' always follows an LF), so converting the wire bytes and the unstuffed ones is the same.
 */
import { Buffer } from 'node:buffer';
import { DotDecoder } from '../protocol/dot.ts';
import { instantiateWasm } from '../protocol/wasm.ts';
import { WASM_BASE64 } from './dotDecodeWasm.ts';

const LF = 0x0a;
const CR = 0x0d;
const EMPTY = Buffer.alloc(0);

/** Input bytes per call of the WebAssembly loop; a larger chunk goes through in several. */
const STAGE = 64 * 1024;
/** Where the input goes: mem[IN_AT - 1] is the byte before it, then up to 2 held bytes, then the chunk. */
const IN_AT = 64;
const OUT_AT = IN_AT + STAGE + 128;
const WASM_BYTES = OUT_AT + STAGE + 128; // dot-decode.wat reads and writes up to 32 bytes past the ends

interface WasmDecoder {
  decode(src: number, n: number, dst: number, lf: number): number;
  mem: Buffer;
  /** [consumed, done] written by decode() at address 0. */
  results: Int32Array;
}

let wasmDecoder: WasmDecoder | null | undefined;

/** The instance, made on first use; null where WebAssembly is unavailable (e.g. node --jitless). */
function loadWasm(): WasmDecoder | null {
  if (wasmDecoder !== undefined) return wasmDecoder;
  const w = instantiateWasm(WASM_BASE64, WASM_BYTES);
  wasmDecoder = w && {
    decode: w.exports.decode as WasmDecoder['decode'],
    mem: Buffer.from(w.buffer),
    results: new Int32Array(w.buffer, 0, 2),
  };
  return wasmDecoder;
}

/** Which loop an LfDecoder made without options uses here. */
export function lfDecoderEngine(): 'wasm' | 'js' {
  return loadWasm() === null ? 'js' : 'wasm';
}

/** What push() returns; one object per decoder, overwritten by each call. */
export interface DecodeResult {
  /** Decoded bytes of this chunk: a view of memory the next push() of any LfDecoder reuses. */
  data: Buffer;
  done: boolean;
  /** After the terminator: the bytes that follow it (a view of the chunk). */
  rest: Buffer;
}

export class LfDecoder {
  private readonly wasm: WasmDecoder | null;
  /** The wire byte before the next input is an LF (true at the start: the body's first line starts there). */
  private prevLf = true;
  /** Undecided bytes from the end of the last chunk ('.', ".\r" at a line start, or a CR): at most 2. */
  private held = 0;
  private held0 = 0;
  private held1 = 0;
  private ended = false;
  private readonly result: DecodeResult = { data: EMPTY, done: false, rest: EMPTY };
  /** The JavaScript path: DotDecoder, then CR-before-LF removal. */
  private readonly dots: DotDecoder | undefined;
  private cr = false;
  private out: Buffer = EMPTY;

  /** engine: 'js' uses the JavaScript path even where WebAssembly is available (tests compare the two). */
  constructor(opts: { engine?: 'wasm' | 'js' } = {}) {
    this.wasm = opts.engine === 'js' ? null : loadWasm();
    if (this.wasm === null) this.dots = new DotDecoder();
  }

  get done(): boolean {
    return this.ended;
  }

  /**
   * Feeds the bytes that follow the +OK line (as DotDecoder.push). `result.data` is valid until the next push()
   * of any LfDecoder: a consumer keeps a copy, not the view.
   */
  push(chunk: Buffer): DecodeResult {
    if (this.ended) throw new Error('LfDecoder.push() after the terminator');
    const w = this.wasm;
    if (w === null) return this.pushJs(chunk);
    const r = this.result;
    if (chunk.length <= STAGE) return this.stage(w, chunk, 0, chunk.length, r);
    // Larger than a stage (rare: a transport with big reads): the stages' output gathered in one buffer.
    const parts: Buffer[] = [];
    for (let from = 0; from < chunk.length; from += STAGE) {
      this.stage(w, chunk, from, Math.min(from + STAGE, chunk.length), r);
      parts.push(Buffer.from(r.data));
      if (r.done) break;
    }
    r.data = Buffer.concat(parts);
    return r;
  }

  /** chunk[from, to) (at most STAGE bytes) through the WebAssembly loop. */
  private stage(w: WasmDecoder, chunk: Buffer, from: number, to: number, r: DecodeResult): DecodeResult {
    const mem = w.mem;
    mem[IN_AT - 1] = this.prevLf ? LF : 0;
    const h = this.held;
    if (h > 0) mem[IN_AT] = this.held0;
    if (h > 1) mem[IN_AT + 1] = this.held1;
    const len = to - from;
    if (len < 64) {
      for (let k = 0; k < len; k++) mem[IN_AT + h + k] = chunk[from + k];
    } else {
      chunk.copy(mem, IN_AT + h, from, to);
    }
    const total = h + len;
    const k = w.decode(IN_AT, total, OUT_AT, 1);
    const consumed = w.results[0];
    r.data = mem.subarray(OUT_AT, OUT_AT + k);
    if (w.results[1] !== 0) {
      this.ended = true;
      r.done = true;
      r.rest = chunk.subarray(from + consumed - h);
      return r;
    }
    r.done = false;
    r.rest = EMPTY;
    const left = total - consumed;
    this.held = left;
    if (left > 0) this.held0 = mem[IN_AT + consumed];
    if (left > 1) this.held1 = mem[IN_AT + consumed + 1];
    this.prevLf = mem[IN_AT + consumed - 1] === LF;
    return r;
  }

  private pushJs(chunk: Buffer): DecodeResult {
    const d = (this.dots as DotDecoder).push(chunk);
    const r = this.result;
    r.done = d.done;
    r.rest = d.rest;
    this.ended = d.done;
    const src = d.data;
    const n = src.length;
    // One more byte for a CR held from the last chunk.
    if (this.out.length < n + 1) this.out = Buffer.allocUnsafe(Math.max(n + 1, 4096));
    const out = this.out;
    let o = 0;
    let i = 0;
    if (this.cr && n > 0) {
      this.cr = false;
      if (src[0] !== LF) out[o++] = CR;
    }
    for (; i < n; i++) {
      const b = src[i];
      if (b === CR) {
        if (i + 1 === n) {
          // Decided by the next byte; the body never ends in a CR (its last line ends with LF).
          this.cr = true;
          break;
        }
        if (src[i + 1] === LF) continue;
      }
      out[o++] = b;
    }
    r.data = out.subarray(0, o);
    return r;
  }
}
