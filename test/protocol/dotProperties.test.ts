import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SizeCounter, transmittedSize } from '../../src/mail/size.ts';
import { DotDecoder, DotEncoder, dotEncoderEngine, encodedBound } from '../../src/protocol/dot.ts';

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;

// References written byte by byte, independently of the streaming code under test.

/** The transmitted form (size.ts): bare LF → CRLF, lone CR kept, final line ending added to a non-empty message. */
function repair(x: Uint8Array): Buffer {
  const out: number[] = [];
  for (let i = 0; i < x.length; i++) {
    if (x[i] === LF && (i === 0 || x[i - 1] !== CR)) out.push(CR);
    out.push(x[i]);
  }
  const last = x[x.length - 1];
  if (x.length > 0 && last !== LF) {
    if (last !== CR) out.push(CR);
    out.push(LF);
  }
  return Buffer.from(out);
}

/** Line starts: position 0 and every position after an LF (but not the end). */
function stuff(r: Uint8Array): Buffer {
  const out: number[] = [];
  for (let i = 0; i < r.length; i++) {
    if ((i === 0 || r[i - 1] === LF) && r[i] === DOT) out.push(DOT);
    out.push(r[i]);
  }
  return Buffer.from(out);
}

const TERMINATOR = Buffer.from('.\r\n');

/** TOP on the repaired form: lines up to the first line that is exactly CRLF, then n more lines. */
function topReference(x: Uint8Array, n: number): Buffer {
  const r = repair(x);
  const lines: Buffer[] = [];
  for (let from = 0; from < r.length; ) {
    const lf = r.indexOf(LF, from);
    lines.push(r.subarray(from, lf + 1));
    from = lf + 1;
  }
  const blank = lines.findIndex((l) => l.length === 2 && l[0] === CR);
  return Buffer.concat(blank === -1 ? lines : lines.slice(0, blank + 1 + n));
}

/** RFC 1939 §3 read line by line: ".\r\n" ends; a leading '.' is removed otherwise; "." or ".\r" at the very end
 * may still become the terminator, so it is not data yet. */
function decodeReference(x: Buffer): { data: Buffer; done: boolean; rest: Buffer } {
  const out: Buffer[] = [];
  for (let i = 0; i < x.length; ) {
    const lf = x.indexOf(LF, i);
    const end = lf === -1 ? x.length : lf + 1;
    const line = x.subarray(i, end);
    if (line.toString('latin1') === '.\r\n') return { data: Buffer.concat(out), done: true, rest: x.subarray(end) };
    if (lf === -1 && (line.toString('latin1') === '.' || line.toString('latin1') === '.\r')) break;
    out.push(line[0] === DOT ? line.subarray(1) : line);
    i = end;
  }
  return { data: Buffer.concat(out), done: false, rest: Buffer.alloc(0) };
}

/** Split points from a list of piece sizes, used cyclically. */
function chunk(buf: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let from = 0, k = 0; from < buf.length; k++) {
    const size = sizes[k % sizes.length];
    out.push(buf.subarray(from, from + size));
    from += size;
  }
  return out;
}

function encode(pieces: Buffer[], topLines?: number, engine?: 'wasm' | 'js'): Buffer {
  const enc = new DotEncoder(topLines === undefined ? { engine } : { topLines });
  const out = pieces.map((p) => enc.write(p));
  out.push(enc.end());
  return Buffer.concat(out);
}

function decode(pieces: Buffer[]): { data: Buffer; done: boolean; rest: Buffer } {
  const dec = new DotDecoder();
  const data: Buffer[] = [];
  for (let k = 0; k < pieces.length; k++) {
    const r = dec.push(pieces[k]);
    data.push(r.data);
    if (r.done) return { data: Buffer.concat(data), done: true, rest: Buffer.concat([r.rest, ...pieces.slice(k + 1)]) };
  }
  return { data: Buffer.concat(data), done: false, rest: Buffer.alloc(0) };
}

/** Messages biased towards the bytes that matter: '.', CR, LF; plus some text and any byte. */
const messageOf = (maxLength: number, textWeight: number, size: 'small' | 'max' = 'small') =>
  fc
    .array(
      fc.oneof(
        { arbitrary: fc.constantFrom(DOT, CR, LF), weight: 6 },
        { arbitrary: fc.constantFrom(0x41, 0x20), weight: textWeight },
        { arbitrary: fc.integer({ min: 0, max: 255 }), weight: 1 },
      ),
      { maxLength, size },
    )
    .map((a) => Buffer.from(a));
const message = messageOf(400, 2);
const sizes = fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 16 });
const RUNS = { numRuns: 1000 };

describe('dot codec properties', () => {
  it('the reference repair agrees with SizeCounter', () => {
    fc.assert(
      fc.property(message, sizes, (x, s) => {
        const counter = new SizeCounter();
        for (const p of chunk(x, s)) counter.update(p);
        assert.equal(counter.digest(), repair(x).length);
        assert.equal(transmittedSize(x), repair(x).length);
      }),
      RUNS,
    );
  });

  it('encode gives the reference wire bytes whatever the chunking', () => {
    fc.assert(
      fc.property(message, sizes, (x, s) => {
        const want = Buffer.concat([stuff(repair(x)), TERMINATOR]);
        assert.deepEqual(encode(chunk(x, s)), want);
      }),
      RUNS,
    );
  });

  it('encoded size minus stuffing dots and terminator equals transmittedSize', () => {
    fc.assert(
      fc.property(message, sizes, (x, s) => {
        const wire = encode(chunk(x, s));
        let stuffing = 0;
        const r = repair(x);
        for (let i = 0; i < r.length; i++) if ((i === 0 || r[i - 1] === LF) && r[i] === DOT) stuffing++;
        assert.equal(wire.length - stuffing - TERMINATOR.length, transmittedSize(x));
      }),
      RUNS,
    );
  });

  it('decode(encode(x)) is the repaired message, with random chunking on both sides', () => {
    const trailer = Buffer.from('+OK next reply\r\n');
    fc.assert(
      fc.property(message, sizes, sizes, (x, s1, s2) => {
        const wire = Buffer.concat([encode(chunk(x, s1)), trailer]);
        const got = decode(chunk(wire, s2));
        assert.equal(got.done, true);
        assert.deepEqual(got.data, repair(x));
        assert.deepEqual(got.rest, trailer);
      }),
      RUNS,
    );
  });

  it('TOP gives the reference cut whatever the chunking, and decodes back', () => {
    fc.assert(
      fc.property(message, sizes, fc.integer({ min: 0, max: 6 }), (x, s, n) => {
        const kept = topReference(x, n);
        const want = Buffer.concat([stuff(kept), TERMINATOR]);
        const enc = new DotEncoder({ topLines: n });
        const out: Buffer[] = [];
        for (const p of chunk(x, s)) {
          out.push(enc.write(p));
          if (enc.finished) assert.equal(enc.write(p).length, 0);
        }
        out.push(enc.end());
        const wire = Buffer.concat(out);
        assert.deepEqual(wire, want);
        const got = decode(chunk(wire, s));
        assert.equal(got.done, true);
        assert.deepEqual(got.data, kept);
      }),
      RUNS,
    );
  });

  it('decoding arbitrary bytes gives the reference result whatever the chunking', () => {
    fc.assert(
      fc.property(message, sizes, (x, s) => {
        const want = decodeReference(x);
        assert.deepEqual(decode([x]), want);
        assert.deepEqual(decode(chunk(x, s)), want);
      }),
      RUNS,
    );
  });
});

// The WebAssembly encoding loop (src/protocol/dot-encode.wat, 16 bytes per step) against the byte-by-byte
// references above and against the JavaScript loop, on inputs long enough for its steps, cut everywhere.

const ROOT = resolve(import.meta.dirname, '../..');
const wire = (x: Uint8Array) => Buffer.concat([stuff(repair(x)), TERMINATOR]);

/** writeInto() into one reused buffer full of line ends and dots, at a moving offset. */
function encodeInto(pieces: Buffer[]): Buffer {
  const enc = new DotEncoder();
  const max = Math.max(0, ...pieces.map((p) => p.length));
  const target = Buffer.alloc(encodedBound(max) + 7);
  const out: Buffer[] = [];
  pieces.forEach((p, k) => {
    target.fill(k % 2 === 0 ? LF : DOT);
    const at = k % 7;
    const n = enc.writeInto(p, target, at);
    out.push(Buffer.from(target.subarray(at, at + n)));
  });
  out.push(enc.end());
  return Buffer.concat(out);
}

/** Every engine and entry point gives `want` for these pieces. */
function assertAllEngines(pieces: Buffer[], want: Buffer, label = ''): void {
  assert.deepEqual(encode(pieces, undefined, 'wasm'), want, `wasm ${label}`);
  assert.deepEqual(encode(pieces, undefined, 'js'), want, `js ${label}`);
  assert.deepEqual(encodeInto(pieces), want, `writeInto ${label}`);
}

describe('DotEncoder, WebAssembly loop', () => {
  it('is the engine in use on this Node (so the tests below test it)', () => {
    assert.equal(dotEncoderEngine(), 'wasm');
  });

  it("the committed bytes are what WABT's wat2wasm makes of dot-encode.wat", () => {
    // Exits 1 (execFileSync throws) when src/protocol/dotEncodeWasm.ts differs from the assembled .wat.
    execFileSync(process.execPath, [join(ROOT, 'scripts/build-wasm.mjs'), '--check'], { cwd: ROOT, stdio: 'pipe' });
  });

  it('gives the reference bytes, as the JavaScript loop does, whatever the chunking (long inputs)', () => {
    const long = messageOf(3000, 18, 'max');
    const pieces = fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 8 });
    fc.assert(
      fc.property(long, pieces, (x, s) => assertAllEngines(chunk(x, s), wire(x))),
      { numRuns: 600 },
    );
  });

  it('an LF, a CR before it and a dot after it at every position of a 16-byte step, cut at every position', () => {
    for (let pad = 0; pad < 40; pad++) {
      for (const tail of ['\n', '\r\n', '\n.', '\r\n.', '\r', '.', '\n\n', '\n.\n', '\r\r\n']) {
        const x = Buffer.from(`${'a'.repeat(pad)}${tail}${'b'.repeat(17)}${tail}`, 'latin1');
        const want = wire(x);
        for (let at = 0; at <= x.length; at++) {
          assertAllEngines([x.subarray(0, at), x.subarray(at)], want, `pad ${pad} ${JSON.stringify(tail)} at ${at}`);
        }
      }
    }
  });

  it('edge inputs: lone CR, CR at a chunk edge, dot first in a chunk, empty lines, no final newline', () => {
    const cases = [
      `${'x'.repeat(31)}\r`,
      `${'x'.repeat(16)}\r\r\r${'y'.repeat(20)}\r`,
      `.${'x'.repeat(40)}\n.${'y'.repeat(40)}\n..`,
      '\n'.repeat(70),
      '\r\n'.repeat(70),
      '\n.'.repeat(40),
      'z'.repeat(100),
      `${'.\r\n'.repeat(33)}.`,
    ];
    for (const c of cases) {
      const x = Buffer.from(c, 'latin1');
      const want = wire(x);
      for (let at = 0; at <= x.length; at++) {
        for (const step of [1, 15, 16, 17, 33]) {
          const pieces = [x.subarray(0, at), ...chunk(x.subarray(at), [step])];
          assertAllEngines(pieces, want, `${JSON.stringify(c)} at ${at} step ${step}`);
        }
      }
    }
  });

  it('large chunks that cross the stages of its memory (256 KiB) give the reference bytes', () => {
    let seed = 7;
    const rand = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return seed >>> 0;
    };
    const alphabet = [LF, LF, CR, DOT, 0x41, 0x42, 0x20, 0x20, 0x20, 0x43, 0x44, 0x45];
    const x = Buffer.alloc(700_001);
    for (let i = 0; i < x.length; i++) x[i] = alphabet[rand() % alphabet.length];
    const want = wire(x);
    for (const s of [[x.length], [262_144], [262_143, 262_145], [1 << 20], [100_000, 300_000]]) {
      assertAllEngines(chunk(x, s), want, `pieces of ${s}`);
    }
  });

  it('returns the chunk itself when nothing is inserted (CRLF text without a line starting with a dot)', () => {
    const enc = new DotEncoder();
    const crlf = Buffer.from('Subject: x\r\n\r\nsome text. more text\r\n'.repeat(20), 'latin1');
    assert.equal(enc.write(crlf), crlf);
    const lf = Buffer.from('a\nb\n', 'latin1');
    assert.notEqual(enc.write(lf), lf);
  });

  it('writeInto refuses a buffer without room for the worst case', () => {
    const enc = new DotEncoder();
    assert.throws(() => enc.writeInto(Buffer.from('abc\n'), Buffer.alloc(8), 0), RangeError);
  });
});
