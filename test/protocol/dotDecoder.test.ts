import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import { DotDecoder } from '../../src/protocol/dot.ts';
import { b, show, splitAt } from '../helpers/split.ts';

interface Decoded {
  data: string;
  done: boolean;
  rest: string;
}

/** Feeds pieces until done; `rest` is the rest of the last piece fed plus every piece not fed. */
function decode(pieces: Buffer[]): Decoded {
  const dec = new DotDecoder();
  const data: Buffer[] = [];
  for (let k = 0; k < pieces.length; k++) {
    const r = dec.push(pieces[k]);
    data.push(r.data);
    if (r.done) {
      assert.equal(dec.done, true);
      const rest = Buffer.concat([r.rest, ...pieces.slice(k + 1)]);
      return { data: Buffer.concat(data).toString('latin1'), done: true, rest: rest.toString('latin1') };
    }
    assert.equal(r.rest.length, 0);
  }
  return { data: Buffer.concat(data).toString('latin1'), done: false, rest: '' };
}

function assertEverySplit(input: string, want: Decoded): void {
  const buf = b(input);
  assert.deepEqual(decode([buf]), want, `whole ${show(input)}`);
  for (let i = 0; i <= buf.length; i++) {
    assert.deepEqual(decode(splitAt(buf, [i])), want, `split at ${i} ${show(input)}`);
    if (buf.length <= 48) {
      for (let j = i; j <= buf.length; j++) {
        assert.deepEqual(decode(splitAt(buf, [i, j])), want, `split at ${i},${j} ${show(input)}`);
      }
    }
  }
  const bytes = [...buf].map((x) => Buffer.from([x]));
  assert.deepEqual(decode(bytes), want, `byte by byte ${show(input)}`);
}

const done = (data: string, rest = ''): Decoded => ({ data, done: true, rest });
const open = (data: string): Decoded => ({ data, done: false, rest: '' });

const CASES: [input: string, want: Decoded][] = [
  ['.\r\n', done('')], // empty body
  ['.\r\n+OK next\r\n', done('', '+OK next\r\n')],
  ['abc\r\n.\r\n', done('abc\r\n')],
  ['abc\r\n.\r\n+OK 2 200\r\n', done('abc\r\n', '+OK 2 200\r\n')],
  ['..abc\r\n.\r\n', done('.abc\r\n')], // unstuffing, first line
  ['x\r\n..abc\r\n.\r\n', done('x\r\n.abc\r\n')],
  ['..\r\n.\r\n', done('.\r\n')], // a stored line "." sent stuffed
  ['...\r\n.\r\n', done('..\r\n')],
  ['a\r\n.b\r\n.\r\n', done('a\r\nb\r\n')], // an unstuffed dot line from a sloppy server: dot removed (RFC 1939 §3)
  ['.\rx\r\n.\r\n', done('\rx\r\n')], // ".\r" followed by something other than LF is not the end
  ['.\r\r\n.\r\n', done('\r\r\n')],
  ['.\r.\r\n.\r\n', done('\r.\r\n')],
  ['a.\r\n.\r\n', done('a.\r\n')], // dot not at line start
  ['a\r.\r\n.\r\n', done('a\r.\r\n')], // a lone CR does not end a line
  ['a\r\n.\n.\r\n', done('a\r\n\n')], // ".\n" does not terminate: its dot is stuffing
  ['a\n.\r\n', done('a\n')], // a line starts after a bare LF too
  ['a\r\n\r\n.\r\n', done('a\r\n\r\n')],
  ['\r\n.\r\n', done('\r\n')],
  ['\x00\xff\r\n..\x80\x00\r\n.\r\n\xfe', done('\x00\xff\r\n.\x80\x00\r\n', '\xfe')], // binary bytes
  ['.\r\n.\r\n', done('', '.\r\n')], // only the first terminator counts
  // not terminated yet: "." and ".\r" at the start of a line are held back, nothing else is
  ['abc\r\n', open('abc\r\n')],
  ['abc\r\n.', open('abc\r\n')],
  ['abc\r\n.\r', open('abc\r\n')],
  ['abc\r\n..', open('abc\r\n.')],
  ['abc\r', open('abc\r')],
  ['abc\r\n.\n', open('abc\r\n\n')],
  ['', open('')],
];

describe('DotDecoder', () => {
  it('decodes each case exactly, whole, split at every position and pair of positions, and byte by byte', () => {
    for (const [input, want] of CASES) assertEverySplit(input, want);
  });

  it('finds a terminator split across chunks in every way', () => {
    const splits = [
      ['body\r', '\n.\r\n'],
      ['body\r\n', '.\r\n'],
      ['body\r\n.', '\r\n'],
      ['body\r\n.\r', '\n'],
      ['body\r', '\n', '.', '\r', '\nNEXT'],
    ];
    for (const pieces of splits) {
      const got = decode(pieces.map(b));
      assert.equal(got.done, true, show(pieces.join('|')));
      assert.equal(got.data, 'body\r\n');
    }
  });

  it('holds back at most ".\\r" and releases it when the line goes on', () => {
    const dec = new DotDecoder();
    assert.equal(dec.push(b('abc\r\n.')).data.toString('latin1'), 'abc\r\n');
    assert.equal(dec.push(b('\r')).data.toString('latin1'), '');
    const r = dec.push(b('x\r\n'));
    assert.equal(r.data.toString('latin1'), '\rx\r\n');
    assert.equal(r.done, false);
    assert.equal(dec.done, false);
    assert.equal(dec.push(b('.')).data.length, 0);
    assert.equal(dec.push(b('.')).data.toString('latin1'), '.');
  });

  it('returns the chunk itself when nothing is removed', () => {
    const dec = new DotDecoder();
    const chunk = b('Subject: x\r\n\r\nbody\r\n');
    assert.equal(dec.push(chunk).data, chunk);
  });

  it('refuses push() after the terminator', () => {
    const dec = new DotDecoder();
    assert.equal(dec.push(b('.\r\n')).done, true);
    assert.throws(() => dec.push(b('x')));
  });
});
