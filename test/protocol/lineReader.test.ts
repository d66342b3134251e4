import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LineReader } from '../../src/protocol/lineReader.ts';
import { b, splitAt } from '../helpers/split.ts';

const TOOLONG = '<toolong>';

function drain(r: LineReader, out: string[]): void {
  for (let x = r.next(); x !== null; x = r.next()) out.push(x.kind === 'line' ? x.line.toString('latin1') : TOOLONG);
}

/** Pushes the pieces, draining after each push (eager) or only at the end (lazy); returns lines and the rest. */
function feed(pieces: Buffer[], maxLine: number, drainEach: boolean): { lines: string[]; rest: string } {
  const r = new LineReader({ maxLine });
  const lines: string[] = [];
  for (const p of pieces) {
    r.push(p);
    if (drainEach) drain(r, lines);
  }
  drain(r, lines);
  return { lines, rest: r.takeRest().toString('latin1') };
}

/**
 * Reference, written independently of LineReader: complete lines split on LF with one CR stripped; the incomplete
 * tail counts as too long once it is longer than maxLine + 1, or maxLine + 1 not ending in CR.
 */
function reference(input: string, maxLine: number): { lines: string[]; rest: string } {
  const lines: string[] = [];
  const parts = input.split('\n');
  const tail = parts.pop() as string;
  for (const p of parts) {
    const line = p.endsWith('\r') ? p.slice(0, -1) : p;
    lines.push(line.length > maxLine ? TOOLONG : line);
  }
  const known = tail.length > maxLine + 1 || (tail.length === maxLine + 1 && !tail.endsWith('\r'));
  if (known) lines.push(TOOLONG);
  return { lines, rest: known ? '' : tail };
}

const MAX = 8;
const INPUTS = [
  'USER bob\r\nPASS x y\r\n',
  'a\nb\r\nc',
  '\r\n\n\r\r\n',
  'abc\rdef\r\n',
  'x\r\ry\r\n',
  '12345678\r\n12345678\n',
  '123456789\r\nok\r\n',
  '123456789\nok\n',
  '12345678\r\r\nok\r\n',
  'abcdefghijklmnopqrstuvwxyz\r\nNOOP\r\n',
  'short\r\nabcdefghijklmnopqrstuvwxyz0123456789\r\nQUIT\r\n',
  'abcdefghijkl\r\nmnopqrstuvwxyz\r\nok\r\n',
  'abcdefghijkl\nmnopqrstuvwxyz\n\n',
  '12345678\r',
  '123456789',
  '12345678\rX',
  'ok\r\nabcdefghijklmnop',
  '\xff\x80\x7f\r\n\x01\x02\r\n',
  '',
];

describe('LineReader', () => {
  it('reference agrees with hand-written expectations', () => {
    assert.deepEqual(reference('USER bob\r\nPASS x y\r\n', MAX).lines, ['USER bob', 'PASS x y']);
    assert.deepEqual(reference('a\nb\r\nc', MAX), { lines: ['a', 'b'], rest: 'c' });
    assert.deepEqual(reference('\r\n\n\r\r\n', MAX).lines, ['', '', '\r']);
    assert.deepEqual(reference('12345678\r\n123456789\r\nok\n', MAX).lines, ['12345678', TOOLONG, 'ok']);
    assert.deepEqual(reference('12345678\r', MAX), { lines: [], rest: '12345678\r' });
    assert.deepEqual(reference('123456789', MAX), { lines: [TOOLONG], rest: '' });
  });

  it('gives the same lines whole, split at every position, at every pair of positions, and byte by byte', () => {
    for (const input of INPUTS) {
      const buf = b(input);
      const want = reference(input, MAX);
      for (const drainEach of [true, false]) {
        assert.deepEqual(feed([buf], MAX, drainEach), want, `whole ${JSON.stringify(input)}`);
        for (let i = 0; i <= buf.length; i++) {
          assert.deepEqual(feed(splitAt(buf, [i]), MAX, drainEach), want, `split ${i} ${JSON.stringify(input)}`);
          for (let j = i; j <= buf.length; j++) {
            assert.deepEqual(feed(splitAt(buf, [i, j]), MAX, drainEach), want, `split ${i},${j}`);
          }
        }
        const bytes = [...buf].map((x) => Buffer.from([x]));
        assert.deepEqual(feed(bytes, MAX, drainEach), want, `byte by byte ${JSON.stringify(input)}`);
      }
    }
  });

  it('returns a bare-LF line and strips only the CR right before the LF', () => {
    assert.deepEqual(feed([b('a\rb\r\nc\r\r\nd\n')], 20, true).lines, ['a\rb', 'c\r', 'd']);
    assert.deepEqual(feed([b('a\r'), b('b\r'), b('\n')], 20, true).lines, ['a\rb']);
  });

  it('accepts a line of exactly maxLine bytes and waits for the byte after a trailing CR', () => {
    const r = new LineReader({ maxLine: 4 });
    r.push(b('abcd\r'));
    assert.equal(r.next(), null);
    r.push(b('\n'));
    assert.deepEqual(r.next(), { kind: 'line', line: b('abcd') });
    r.push(b('abcd\rx'));
    assert.deepEqual(r.next(), { kind: 'toolong' });
    assert.equal(r.next(), null);
  });

  it('reports a too-long line once, before its LF arrives, discards its rest, then reads the next line', () => {
    const r = new LineReader({ maxLine: 8 });
    r.push(b('NOOP\r\n'));
    r.push(b('x'.repeat(20)));
    assert.equal(r.buffered, 6, 'complete lines are kept, the too-long tail is not');
    assert.deepEqual(r.next(), { kind: 'line', line: b('NOOP') });
    assert.deepEqual(r.next(), { kind: 'toolong' });
    assert.equal(r.next(), null);
    r.push(b('y'.repeat(100)));
    assert.equal(r.next(), null);
    assert.equal(r.buffered, 0);
    r.push(b('zz\r'));
    assert.equal(r.next(), null);
    r.push(b('\nSTAT\r\nLI'));
    assert.deepEqual(r.next(), { kind: 'line', line: b('STAT') });
    assert.equal(r.next(), null);
    r.push(b('ST\r\n'));
    assert.deepEqual(r.next(), { kind: 'line', line: b('LIST') });
    assert.equal(r.next(), null);
  });

  it("with tooLong: 'at-end', reports a too-long line once its LF arrives, in its place among the lines", () => {
    const r = new LineReader({ maxLine: 8, tooLong: 'at-end' });
    r.push(b('NOOP\r\n'));
    r.push(b('x'.repeat(20)));
    assert.equal(r.buffered, 6, 'the too-long tail is dropped at once all the same');
    assert.deepEqual(r.next(), { kind: 'line', line: b('NOOP') });
    assert.equal(r.next(), null, 'no report before the end of the line');
    r.push(b('y'.repeat(100)));
    assert.equal(r.next(), null);
    assert.equal(r.buffered, 0);
    r.push(b('zz\r\nSTAT\r\n'));
    assert.deepEqual(r.next(), { kind: 'toolong' });
    assert.deepEqual(r.next(), { kind: 'line', line: b('STAT') });
    assert.equal(r.next(), null);
  });

  it("with tooLong: 'at-end', gives the same lines at every split point as the eager reader on complete input", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constant('ok'), fc.constant('x'.repeat(30)), fc.constant('')), { maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 10 }),
        (lines, cuts) => {
          const input = b(lines.map((l) => `${l}\r\n`).join(''));
          const r = new LineReader({ maxLine: 8, tooLong: 'at-end' });
          const out: string[] = [];
          let at = 0;
          for (const c of [...cuts, input.length]) {
            const end = Math.min(input.length, at + c);
            r.push(input.subarray(at, end));
            drain(r, out);
            at = end;
          }
          r.push(input.subarray(at));
          drain(r, out);
          assert.deepEqual(out, reference(input.toString('latin1'), 8).lines);
        },
      ),
    );
  });

  it('reports two consecutive too-long lines twice', () => {
    const { lines } = feed([b('x'.repeat(20) + '\n' + 'y'.repeat(20)), b('\nok\n')], 8, false);
    assert.deepEqual(lines, [TOOLONG, TOOLONG, 'ok']);
  });

  it('keeps memory bounded while a huge line streams in without LF', () => {
    const maxLine = 1000;
    for (const chunkSize of [1, 7, 999, 1001, 65536]) {
      const r = new LineReader({ maxLine });
      const chunk = Buffer.alloc(chunkSize, 0x41);
      let reports = 0;
      const total = Math.max(20_000, chunkSize * 30);
      for (let sent = 0; sent < total; sent += chunkSize) {
        r.push(chunk);
        assert.ok(r.buffered <= maxLine + 1, `buffered ${r.buffered} with chunk ${chunkSize}`);
        if (sent % 3 === 0) {
          for (let x = r.next(); x !== null; x = r.next()) {
            assert.equal(x.kind, 'toolong');
            reports++;
          }
        }
      }
      for (let x = r.next(); x !== null; x = r.next()) reports++;
      assert.equal(reports, 1, `one report with chunk ${chunkSize}`);
      r.push(b('A\r\nQUIT\r\n'));
      assert.deepEqual(r.next(), { kind: 'line', line: b('QUIT') });
    }
  });

  it('keeps memory bounded when next() is not called at all', () => {
    const r = new LineReader({ maxLine: 100 });
    r.push(b('CAPA\r\n'));
    for (let i = 0; i < 10_000; i++) {
      r.push(Buffer.alloc(97, 0x42));
      assert.ok(r.buffered <= 6 + 101);
    }
    assert.deepEqual(r.next(), { kind: 'line', line: b('CAPA') });
    assert.deepEqual(r.next(), { kind: 'toolong' });
    assert.equal(r.next(), null);
  });

  it('takeRest returns the unread bytes and leaves the reader empty', () => {
    const r = new LineReader({ maxLine: 100 });
    r.push(b('STLS\r\nUSER evil\r\npart'));
    assert.deepEqual(r.next(), { kind: 'line', line: b('STLS') });
    assert.equal(r.takeRest().toString('latin1'), 'USER evil\r\npart');
    assert.equal(r.buffered, 0);
    assert.equal(r.next(), null);
    assert.equal(r.takeRest().length, 0);
    r.push(b('CAPA\r\n'));
    assert.deepEqual(r.next(), { kind: 'line', line: b('CAPA') });
  });

  it('takeRest drops a pending too-long report and the discarding of its rest', () => {
    const r = new LineReader({ maxLine: 4 });
    r.push(b('ok\r\n' + 'x'.repeat(10)));
    assert.equal(r.takeRest().toString('latin1'), 'ok\r\n');
    r.push(b('abc\r\n'));
    assert.deepEqual(r.next(), { kind: 'line', line: b('abc') });
    assert.equal(r.next(), null);
  });

  it('returns lines the caller may keep while the reader goes on', () => {
    const r = new LineReader({ maxLine: 100 });
    const chunk = b('AAAA\r\nBB');
    r.push(chunk);
    const first = r.next();
    r.push(b('BB\r\nCC\r\n'));
    chunk.fill(0x7a);
    assert.deepEqual(first, { kind: 'line', line: b('AAAA') });
    assert.deepEqual(r.next(), { kind: 'line', line: b('BBBB') });
    assert.deepEqual(r.next(), { kind: 'line', line: b('CC') });
  });

  it('reads many pipelined lines pushed in small pieces', () => {
    const r = new LineReader({ maxLine: 1000 });
    const piece = b('NOOP\r\n');
    const lines: string[] = [];
    for (let i = 0; i < 100_000; i++) {
      r.push(piece.subarray(0, 3));
      r.push(piece.subarray(3));
      if (i % 1000 === 999) drain(r, lines);
    }
    drain(r, lines);
    assert.equal(lines.length, 100_000);
    assert.ok(lines.every((l) => l === 'NOOP'));
    assert.equal(r.buffered, 0);
  });

  it('property: random chunking and random drain timing give the reference lines', () => {
    const byte = fc.oneof(
      { arbitrary: fc.constantFrom(0x0a, 0x0d), weight: 2 },
      { arbitrary: fc.constantFrom(0x41, 0x20), weight: 3 },
      { arbitrary: fc.integer({ min: 0, max: 255 }), weight: 1 },
    );
    fc.assert(
      fc.property(
        fc.array(byte, { maxLength: 200 }),
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 20 }),
        fc.integer({ min: 0, max: 12 }),
        fc.boolean(),
        (bytes, sizes, maxLine, drainEach) => {
          const buf = Buffer.from(bytes);
          const pieces: Buffer[] = [];
          for (let from = 0, k = 0; from < buf.length; k++) {
            const size = sizes[k % sizes.length];
            pieces.push(buf.subarray(from, from + size));
            from += size;
          }
          assert.deepEqual(feed(pieces, maxLine, drainEach), reference(buf.toString('latin1'), maxLine));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('rejects a negative maxLine', () => {
    assert.throws(() => new LineReader({ maxLine: -1 }), RangeError);
  });
});
