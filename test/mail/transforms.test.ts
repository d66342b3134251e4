/** The delivery transforms give the same bytes whatever the chunking, and match a simple reference. */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CrlfToLf, MboxrdQuote } from '../../src/mail/transforms.ts';

async function run(t: NodeJS.ReadWriteStream, chunks: Buffer[]): Promise<Buffer> {
  const out: Buffer[] = [];
  const src = Readable.from(chunks, { objectMode: false });
  await new Promise<void>((resolve, reject) => {
    src.pipe(t as unknown as NodeJS.WritableStream);
    t.on('data', (d: Buffer) => out.push(d));
    t.on('end', resolve);
    t.on('error', reject);
  });
  return Buffer.concat(out);
}

function splitAt(b: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.filter((c) => c > 0 && c < b.length))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of [...points, b.length]) {
    out.push(b.subarray(from, p));
    from = p;
  }
  return out.filter((x) => x.length > 0);
}

const refCrlf = (b: Buffer) => Buffer.from(b.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
const refMboxrd = (b: Buffer) => Buffer.from(b.toString('latin1').replace(/^(>*From )/gm, '>$1'), 'latin1');

describe('delivery transforms', () => {
  const sample = Buffer.from(
    'From me\r\n>From you\r\nFrom\r\n>>>From x\r\nFro\r\n\r\r\n\rx\r\n>F\r\n From \r\nFrom ',
    'latin1',
  );

  it('CRLF → LF at every split point', async () => {
    for (let p = 0; p <= sample.length; p++) {
      assert.deepEqual(await run(new CrlfToLf(), splitAt(sample, [p])), refCrlf(sample), `split at ${p}`);
    }
  });

  it('mboxrd quoting at every split point, and byte by byte', async () => {
    const lf = refCrlf(sample);
    for (let p = 0; p <= lf.length; p++) {
      assert.deepEqual(await run(new MboxrdQuote(), splitAt(lf, [p])), refMboxrd(lf), `split at ${p}`);
    }
    const bytes = Array.from({ length: lf.length }, (_, i) => i);
    assert.deepEqual(await run(new MboxrdQuote(), splitAt(lf, bytes)), refMboxrd(lf));
  });

  it('CRLF → LF of large chunks (the string pass) and small ones (the byte loop) alike, with CRs at the seams', async () => {
    // 40 KB of CRLF, bare CR, bare LF and 8-bit bytes; chunks from 1 byte to past the 64 KiB output buffer.
    const unit = Buffer.from('line\r\n\r\r\nx\ry\n\xff\x00\r', 'latin1');
    const input = Buffer.concat(Array.from({ length: 2700 }, () => unit));
    const expected = refCrlf(input);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat({ max: input.length }), { maxLength: 6 }), async (cuts) => {
        assert.deepEqual(await run(new CrlfToLf(), splitAt(input, cuts)), expected);
      }),
      { numRuns: 60 },
    );
    for (const size of [8191, 8192, 8193, 65536, 70000]) {
      const cuts = Array.from({ length: Math.ceil(input.length / size) }, (_, i) => i * size);
      assert.deepEqual(await run(new CrlfToLf(), splitAt(input, cuts)), expected, `chunks of ${size}`);
    }
    const huge = Buffer.concat(Array.from({ length: 6 }, () => input)); // one 240 KB chunk: larger than the buffer
    assert.deepEqual(await run(new CrlfToLf(), [huge]), refCrlf(huge));
  });

  it('both match the reference for random input and random chunking (fast-check)', async () => {
    const alphabet = fc.constantFrom(...'From >\r\nxF'.split(''));
    await fc.assert(
      fc.asyncProperty(
        fc.array(alphabet, { maxLength: 200 }).map((a) => Buffer.from(a.join(''), 'latin1')),
        fc.array(fc.nat({ max: 200 }), { maxLength: 20 }),
        async (input, cuts) => {
          assert.deepEqual(await run(new CrlfToLf(), splitAt(input, cuts)), refCrlf(input));
          const lf = refCrlf(input);
          assert.deepEqual(await run(new MboxrdQuote(), splitAt(lf, cuts)), refMboxrd(lf));
        },
      ),
      { numRuns: 500 },
    );
  });
});
