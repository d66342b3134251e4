/**
 * LfDecoder (dot-unstuffing + terminator + CRLF → LF in one pass, WebAssembly and JavaScript) against what the
 * client and fetch did before it: DotDecoder's bytes through fetch's CrlfToLfWriter, fed the same chunks; and
 * against a byte-by-byte reference of the whole input. Adversarial inputs: chunk boundaries inside "\r\n", inside
 * "\r\n.", inside the terminator, lone CR, lone LF, lines starting with "..", 8-bit bytes, empty bodies, bodies
 * longer than one WebAssembly stage.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LfDecoder, lfDecoderEngine } from '../../src/client/lfDecoder.ts';
import { CrlfToLfWriter } from '../../src/mail/transforms.ts';
import { DotDecoder, DotEncoder } from '../../src/protocol/dot.ts';
import { splitAt } from '../helpers/split.ts';

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;

interface Decoded {
  data: Buffer;
  done: boolean;
  rest: Buffer;
}

/** Byte by byte, on the whole input: RFC 1939 §3 unstuffing up to ".\r\n" at a line start, then CR LF → LF. */
function reference(x: Buffer): Decoded {
  const unstuffed: number[] = [];
  let i = 0;
  let done = false;
  let undecided = 0; // "." or ".\r" at a line start at the very end: not data yet
  while (i < x.length) {
    const lineStart = i === 0 || x[i - 1] === LF;
    if (lineStart && x[i] === DOT) {
      if (i + 1 >= x.length) {
        undecided = 1;
        break;
      }
      if (x[i + 1] === CR) {
        if (i + 2 >= x.length) {
          undecided = 2;
          break;
        }
        if (x[i + 2] === LF) {
          done = true;
          i += 3;
          break;
        }
      }
      i++; // a stuffed dot
      continue;
    }
    unstuffed.push(x[i]);
    i++;
  }
  const out: number[] = [];
  for (let k = 0; k < unstuffed.length; k++) {
    if (unstuffed[k] === CR) {
      // The last CR of an unfinished input may still meet an LF (or was followed by held "." bytes: then not).
      if (k + 1 === unstuffed.length && !done && undecided === 0) break;
      if (unstuffed[k + 1] === LF) continue;
    }
    out.push(unstuffed[k]);
  }
  return { data: Buffer.from(out), done, rest: done ? x.subarray(i) : Buffer.alloc(0) };
}

/** The rest after the terminator: what its chunk had left, and every chunk after it. */
function restOf(rest: Buffer, chunks: Buffer[], k: number): Buffer {
  return Buffer.concat([rest, ...chunks.slice(k + 1)]);
}

/** Feeds `chunks` to a decoder; the data concatenated, done, rest (copies: the decoder reuses its output). */
function run(make: () => { push(c: Buffer): Decoded }, chunks: Buffer[]): Decoded {
  const d = make();
  const out: Buffer[] = [];
  for (let k = 0; k < chunks.length; k++) {
    const r = d.push(chunks[k]);
    out.push(Buffer.from(r.data));
    if (r.done) return { data: Buffer.concat(out), done: true, rest: restOf(r.rest, chunks, k) };
  }
  return { data: Buffer.concat(out), done: false, rest: Buffer.alloc(0) };
}

/** What the client and fetch did before: DotDecoder, then CrlfToLfWriter (its end() only once the body ended). */
function before(chunks: Buffer[]): Decoded {
  const out: Buffer[] = [];
  const writer = new CrlfToLfWriter((b) => out.push(Buffer.from(b)), 1024);
  const d = new DotDecoder();
  for (let k = 0; k < chunks.length; k++) {
    const r = d.push(chunks[k]);
    writer.push(r.data);
    if (r.done) {
      writer.end();
      return { data: Buffer.concat(out), done: true, rest: restOf(r.rest, chunks, k) };
    }
  }
  writer.flush();
  return { data: Buffer.concat(out), done: false, rest: Buffer.alloc(0) };
}

/** `x` cut at the given points (taken modulo its length + 1, in order, once each). */
function split(x: Buffer, cuts: number[]): Buffer[] {
  return splitAt(
    x,
    [...new Set(cuts.map((c) => c % (x.length + 1)))].sort((a, b) => a - b),
  );
}

const engines = (['wasm', 'js'] as const).map((engine) => ({
  engine,
  make: () => new LfDecoder({ engine }),
}));

function checkAll(x: Buffer, chunks: Buffer[]): void {
  const want = reference(x);
  const old = before(chunks);
  assert.deepEqual(old.data, want.data, 'the reference agrees with DotDecoder + CrlfToLfWriter');
  assert.deepEqual(old.rest, want.rest, 'the reference agrees with DotDecoder on the rest');
  for (const { engine, make } of engines) {
    const got = run(make, chunks);
    assert.equal(got.done, want.done, `${engine}: done`);
    assert.deepEqual(got.data, want.data, `${engine}: data of ${JSON.stringify(x.toString('latin1'))}`);
    assert.deepEqual(got.rest, want.rest, `${engine}: rest`);
  }
}

/** Bytes where every rule meets every other: CR, LF, '.', 8-bit bytes, and runs of plain ones between them. */
const byteArb = fc.oneof(
  { arbitrary: fc.constantFrom(CR, LF, DOT, 0xff, 0x80, 0x00), weight: 2 },
  { arbitrary: fc.constant(0x61), weight: 3 },
);

describe('LfDecoder', () => {
  it('runs WebAssembly here (SIMD available in Node 20)', () => {
    assert.equal(lfDecoderEngine(), 'wasm');
  });

  it('short adversarial bodies, split at every position and every pair of positions', () => {
    const cases = [
      '',
      '.\r\n',
      'a\r\n.\r\n',
      '..\r\n.\r\n',
      '...\r\n.\r\nrest',
      'a\rb\r\n.\r\n',
      'a\nb\n.\r\n',
      'a\r\r\n\r\n.\r\n',
      '.\r.\r\n.\r\nX',
      '.\rX\r\n.\r\n',
      '.\n.\r\n',
      '\r\n\r\n..\r\n.\r\n+OK next\r\n',
      'x\r\n.\r',
      'x\r\n.',
      'x\r',
      '\r',
      '\xff\x80.\r\n.\r\n',
      'line\r\n.. dots\r\n..\r\n.\r\r\n.\r\n',
    ];
    for (const s of cases) {
      const x = Buffer.from(s, 'latin1');
      for (let a = 0; a <= x.length; a++) {
        for (let b = a; b <= x.length; b++) checkAll(x, split(x, [a, b]));
      }
    }
  });

  it('random bytes of the rule characters, randomly chunked', () => {
    fc.assert(
      fc.property(
        fc.array(byteArb, { maxLength: 300 }),
        fc.boolean(),
        fc.array(fc.nat(400), { maxLength: 8 }),
        (bytes, terminate, cuts) => {
          const x = Buffer.from(terminate ? [...bytes, CR, LF, DOT, CR, LF, 0x2b, 0x4f] : bytes);
          checkAll(x, split(x, cuts));
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('encoded messages (the wire form of random text) come back in their stored form, any chunking', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constantFrom('\r\n', '\n', '\r', '.', '..', '\xff'), fc.string({ maxLength: 90 })), {
          maxLength: 60,
        }),
        fc.array(fc.nat(6000), { maxLength: 6 }),
        (parts, cuts) => {
          const stored = Buffer.from(parts.join(''), 'latin1');
          const enc = new DotEncoder();
          const wire = Buffer.concat([enc.write(stored), enc.end(), Buffer.from('+OK\r\n')]);
          checkAll(wire, split(wire, cuts));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('a body longer than a stage, in one chunk and in socket-sized chunks', () => {
    const lines: string[] = [];
    for (let i = 0, size = 0; size < 300_000; i++) {
      const len = (i * 37) % 120;
      const body = 'x'.repeat(len);
      size += len + 2;
      lines.push(
        i % 11 === 0 ? `.${body}\r\n` : i % 13 === 0 ? `${body}\r` : i % 17 === 0 ? `${body}\n` : `${body}\r\n`,
      );
    }
    const stored = Buffer.from(lines.join(''), 'latin1');
    const enc = new DotEncoder();
    const wire = Buffer.concat([enc.write(stored), enc.end(), Buffer.from('+OK 2\r\n')]);
    checkAll(wire, [wire]);
    const chunks: Buffer[] = [];
    for (let from = 0; from < wire.length; from += 65536 - 7) chunks.push(wire.subarray(from, from + 65536 - 7));
    checkAll(wire, chunks);
  });

  it('push() after the terminator throws', () => {
    for (const { make } of engines) {
      const d = make();
      assert.equal(d.push(Buffer.from('.\r\n')).done, true);
      assert.throws(() => d.push(Buffer.from('x')));
    }
  });
});
