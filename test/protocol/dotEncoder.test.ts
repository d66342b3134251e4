import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import { DotEncoder } from '../../src/protocol/dot.ts';
import { b, show, splitAt } from '../helpers/split.ts';

function encode(pieces: Buffer[], topLines?: number): string {
  const enc = new DotEncoder(topLines === undefined ? {} : { topLines });
  const out: Buffer[] = [];
  for (const p of pieces) out.push(enc.write(p));
  out.push(enc.end());
  return Buffer.concat(out).toString('latin1');
}

/** Whole, every split position, every pair of positions (short inputs), byte by byte: all must give `want`. */
function assertEverySplit(input: string, want: string, topLines?: number): void {
  const buf = b(input);
  const label = `${show(input)} top=${topLines}`;
  assert.equal(encode([buf], topLines), want, `whole ${label}`);
  for (let i = 0; i <= buf.length; i++) {
    assert.equal(encode(splitAt(buf, [i]), topLines), want, `split at ${i} ${label}`);
    if (buf.length <= 48) {
      for (let j = i; j <= buf.length; j++) {
        assert.equal(encode(splitAt(buf, [i, j]), topLines), want, `split at ${i},${j} ${label}`);
      }
    }
  }
  const bytes = [...buf].map((x) => Buffer.from([x]));
  assert.equal(encode(bytes, topLines), want, `byte by byte ${label}`);
}

const CASES: [input: string, wire: string][] = [
  ['.abc\r\n', '..abc\r\n.\r\n'], // dot at the start of the message
  ['a\n.b\n', 'a\r\n..b\r\n.\r\n'], // dot after LF
  ['a\r\n.b\r\n', 'a\r\n..b\r\n.\r\n'], // dot after CRLF
  ['..\r\n', '...\r\n.\r\n'],
  ['.', '..\r\n.\r\n'], // lone dot, no newline
  ['.\r\n', '..\r\n.\r\n'],
  ['.\n', '..\r\n.\r\n'],
  ['x\r\n.\r\n', 'x\r\n..\r\n.\r\n'], // a stored line that looks like the terminator
  ['a.b\r\n', 'a.b\r\n.\r\n'], // dot not at line start
  ['a\nb\n', 'a\r\nb\r\n.\r\n'], // bare LF
  ['a\r\nb\nc\r\n\n.\n', 'a\r\nb\r\nc\r\n\r\n..\r\n.\r\n'], // mixed
  ['a\rb\r\n', 'a\rb\r\n.\r\n'], // lone CR is data
  ['\r.x\n', '\r.x\r\n.\r\n'], // a dot after a lone CR is not at a line start
  ['a\r\r\n', 'a\r\r\n.\r\n'],
  ['a\r\r\r', 'a\r\r\r\n.\r\n'],
  ['abc', 'abc\r\n.\r\n'], // missing final newline
  ['abc\r', 'abc\r\n.\r\n'], // ends with CR
  ['\r', '\r\n.\r\n'],
  ['\n', '\r\n.\r\n'],
  ['\n\n', '\r\n\r\n.\r\n'],
  ['', '.\r\n'], // empty message
  ['\n.\n..\n...', '\r\n..\r\n...\r\n....\r\n.\r\n'],
  ['\x00\n.\xff\r\n..\x80\r', '\x00\r\n..\xff\r\n...\x80\r\n.\r\n'], // binary bytes
  ['Subject: hi\r\n\r\nbody\r\n', 'Subject: hi\r\n\r\nbody\r\n.\r\n'],
];

describe('DotEncoder', () => {
  it('encodes each case exactly, whole, split at every position and pair of positions, and byte by byte', () => {
    for (const [input, wire] of CASES) assertEverySplit(input, wire);
  });

  it('encodes all 256 byte values', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const want = Buffer.concat([all.subarray(0, 10), b('\r'), all.subarray(10), b('\r\n.\r\n')]).toString('latin1');
    assertEverySplit(all.toString('latin1'), want);
  });

  it('returns the chunk itself when nothing has to change (zero copy)', () => {
    const enc = new DotEncoder();
    const c1 = b('Subject: x\r\n\r\nline\r\n');
    assert.equal(enc.write(c1), c1);
    const c2 = b('a.b\r\nno dot\rlone CR\r\nend');
    assert.equal(enc.write(c2), c2);
    const empty = Buffer.alloc(0);
    assert.equal(enc.write(empty).length, 0);
    assert.equal(enc.end().toString('latin1'), '\r\n.\r\n');
  });

  it('stuffs a dot that starts the next chunk after a chunk ending in LF', () => {
    const enc = new DotEncoder();
    assert.equal(enc.write(b('a\r\n')).toString('latin1'), 'a\r\n');
    assert.equal(enc.write(b('.b\r\n')).toString('latin1'), '..b\r\n');
    assert.equal(enc.write(b('\r')).toString('latin1'), '\r');
    assert.equal(enc.write(b('\n')).toString('latin1'), '\n', 'CR in the previous chunk: no CR added');
    assert.equal(enc.write(b('\n')).toString('latin1'), '\r\n');
    assert.equal(enc.end().toString('latin1'), '.\r\n');
  });

  it('is never finished without TOP, and refuses writes after end()', () => {
    const enc = new DotEncoder();
    enc.write(b('a\r\n\r\nb\r\n'));
    assert.equal(enc.finished, false);
    enc.end();
    assert.throws(() => enc.write(b('x')));
    assert.throws(() => enc.end());
  });

  it('rejects a negative or fractional topLines', () => {
    assert.throws(() => new DotEncoder({ topLines: -1 }), RangeError);
    assert.throws(() => new DotEncoder({ topLines: 1.5 }), RangeError);
  });
});

describe('DotEncoder TOP (RFC 1939 §7)', () => {
  const msg = 'From: a\r\nSubject: b\r\n\r\nline1\r\n.line2\r\nline3\r\n';
  const headers = 'From: a\r\nSubject: b\r\n\r\n';
  const TOP_CASES: [input: string, n: number, wire: string][] = [
    [msg, 0, `${headers}.\r\n`],
    [msg, 1, `${headers}line1\r\n.\r\n`],
    [msg, 2, `${headers}line1\r\n..line2\r\n.\r\n`],
    [msg, 3, `${headers}line1\r\n..line2\r\nline3\r\n.\r\n`],
    [msg, 4, `${headers}line1\r\n..line2\r\nline3\r\n.\r\n`], // fewer body lines than asked: whole message
    [msg, 1000, `${headers}line1\r\n..line2\r\nline3\r\n.\r\n`],
    // LF input
    ['A: 1\nB: 2\n\nx\n.y\nz\n', 0, 'A: 1\r\nB: 2\r\n\r\n.\r\n'],
    ['A: 1\nB: 2\n\nx\n.y\nz\n', 2, 'A: 1\r\nB: 2\r\n\r\nx\r\n..y\r\n.\r\n'],
    // no empty line: all headers, sent whole (and repaired)
    ['From: a\r\nSubject: b\r\n', 0, 'From: a\r\nSubject: b\r\n.\r\n'],
    ['From: a\nSubject: b', 0, 'From: a\r\nSubject: b\r\n.\r\n'],
    ['', 0, '.\r\n'],
    // empty line first: no headers
    ['\r\nbody1\r\nbody2\r\n', 0, '\r\n.\r\n'],
    ['\r\nbody1\r\nbody2\r\n', 1, '\r\nbody1\r\n.\r\n'],
    ['\nbody1\nbody2', 5, '\r\nbody1\r\nbody2\r\n.\r\n'],
    ['.\n\n.body\n', 1, '..\r\n\r\n..body\r\n.\r\n'],
    // empty body lines count as lines
    ['\r\n\r\n\r\nx\r\n', 2, '\r\n\r\n\r\n.\r\n'],
    // last body line without a line ending
    ['H: v\r\n\r\nbody', 1, 'H: v\r\n\r\nbody\r\n.\r\n'],
    ['H: v\r\n\r\nbody\r', 1, 'H: v\r\n\r\nbody\r\n.\r\n'],
    ['H: v\r\n\r\nbody', 0, 'H: v\r\n\r\n.\r\n'],
    // a line of a lone CR before LF is empty; "\r\r\n" is not (only one CR is stripped)
    ['H: v\r\r\nI: w\r\n\r\nbody\r\n', 0, 'H: v\r\r\nI: w\r\n\r\n.\r\n'],
    // a lone CR does not end a line
    ['H: v\r\rI: w\n\nbody\n', 0, 'H: v\r\rI: w\r\n\r\n.\r\n'],
    // a message that ends right at the empty line
    ['H: v\r\n\r\n', 0, 'H: v\r\n\r\n.\r\n'],
    ['H: v\r\n\r', 0, 'H: v\r\n\r\n.\r\n'],
  ];

  it('cuts each case exactly, whole, split at every position and pair of positions, and byte by byte', () => {
    for (const [input, n, wire] of TOP_CASES) assertEverySplit(input, wire, n);
  });

  it('sets finished at the cut and returns nothing afterwards', () => {
    const enc = new DotEncoder({ topLines: 1 });
    assert.equal(enc.write(b('H: v\r\n')).toString('latin1'), 'H: v\r\n');
    assert.equal(enc.finished, false);
    assert.equal(enc.write(b('\r\nbody1\r')).toString('latin1'), '\r\nbody1\r');
    assert.equal(enc.finished, false);
    assert.equal(enc.write(b('\nbody2\r\n')).toString('latin1'), '\n');
    assert.equal(enc.finished, true);
    assert.equal(enc.write(b('more\r\n')).length, 0);
    assert.equal(enc.end().toString('latin1'), '.\r\n');
  });

  it('sets finished with TOP n 0 as soon as the empty line is seen', () => {
    const enc = new DotEncoder({ topLines: 0 });
    const chunk = b('H: v\r\n\r\nbody\r\n');
    const out = enc.write(chunk);
    assert.equal(out.toString('latin1'), 'H: v\r\n\r\n');
    assert.equal(out.buffer, chunk.buffer, 'a cut with nothing to insert is a view of the chunk');
    assert.equal(enc.finished, true);
  });

  it('is not finished when the message has fewer lines than asked', () => {
    const enc = new DotEncoder({ topLines: 3 });
    enc.write(b('H: v\r\n\r\na\r\nb\r\n'));
    assert.equal(enc.finished, false);
    assert.equal(enc.end().toString('latin1'), '.\r\n');
  });
});
