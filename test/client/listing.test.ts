/**
 * Listings (CAPA, LIST, UIDL bodies): split into lines from one decode at their end, with every line's length
 * checked as the bytes come. Lines end with CRLF or a bare LF, a CR elsewhere is data, UTF-8 is decoded, a line of
 * exactly MAX_LIST_LINE octets is accepted and one more is refused, whatever the chunking.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Pop3Client } from '../../src/client/client.ts';
import { Pop3ErrorCode, Pop3ProtocolError } from '../../src/client/errors.ts';
import { MAX_LIST_LINE } from '../../src/client/status.ts';
import { FakeServer, type Step } from './fake.ts';

function steps(capa: string): Step[] {
  return [{ reply: '+OK hi\r\n' }, { expect: 'CAPA', reply: Buffer.from(capa, 'utf8') }];
}

async function capaLines(capa: string, cuts: number[]): Promise<readonly string[]> {
  const fake = new FakeServer(steps(capa), cuts);
  const client = await Pop3Client.connect({ host: 'fake.invalid', tls: 'none', socket: fake, timeoutMs: 5000 });
  const lines = client.capabilities.lines;
  client.destroy();
  return lines;
}

/** The CAPA reply's raw lines as Capabilities keeps them, under every single split of the server's bytes. */
async function everySplit(capa: string, check: (lines: readonly string[] | Error, at: number) => void): Promise<void> {
  const total = new FakeServer(steps(capa)).totalBytes;
  for (let p = 0; p < total; p += p < 40 || p > total - 40 ? 1 : 97) {
    let got: readonly string[] | Error;
    try {
      got = await capaLines(capa, [p]);
    } catch (err) {
      got = err as Error;
    }
    check(got, p);
  }
}

describe('client listings', () => {
  it('CRLF, bare LF, a CR inside a line, UTF-8, empty lines', async () => {
    const body = 'A\r\nB\nC\rD\r\n\r\nUTF8 é\r\n\r\r\nLAST\r\n';
    await everySplit(`+OK\r\n${body}.\r\n`, (got, at) => {
      assert.ok(Array.isArray(got), `split at ${at}: ${String(got)}`);
      assert.deepEqual(got, ['A', 'B', 'C\rD', '', 'UTF8 é', '\r', 'LAST'], `split at ${at}`);
    });
  });

  it('a line of MAX_LIST_LINE octets is accepted (its CRLF not counted), one more is refused', async () => {
    const longest = 'X'.repeat(MAX_LIST_LINE);
    await everySplit(`+OK\r\nA\r\n${longest}\r\nB\r\n.\r\n`, (got, at) => {
      assert.ok(Array.isArray(got), `split at ${at}: ${String(got)}`);
      assert.deepEqual(got, ['A', longest, 'B'], `split at ${at}`);
    });
    for (const ending of ['\r\n', '\n', '']) {
      const reply = `+OK\r\nA\r\n${longest}Y${ending}${ending ? 'B\r\n.\r\n' : ''}`;
      await everySplit(reply, (got, at) => {
        assert.ok(got instanceof Pop3ProtocolError, `split at ${at}, ending ${JSON.stringify(ending)}: ${got}`);
        assert.equal(got.code, Pop3ErrorCode.Protocol);
        assert.match(got.message, /listing line too long/);
      });
    }
  });

  it('many lines, some near the limit, any chunking: refused exactly when one line is too long', async () => {
    // Lengths around the limit and short ones, so that a window of the longest line holds many lines.
    const length = fc.oneof(
      fc.integer({ min: 0, max: 6 }),
      fc.integer({ min: MAX_LIST_LINE - 2, max: MAX_LIST_LINE + 2 }),
    );
    const line = fc.record({ length, crlf: fc.boolean() });
    await fc.assert(
      fc.asyncProperty(
        fc.array(line, { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 40_000 }), { maxLength: 6 }),
        async (lines, cuts) => {
          const body = lines.map((l) => `${'X'.repeat(l.length)}${l.crlf ? '\r\n' : '\n'}`).join('');
          const tooLong = lines.some((l) => l.length > MAX_LIST_LINE);
          let got: readonly string[] | Error;
          try {
            got = await capaLines(
              `+OK\r\n${body}.\r\n`,
              [...new Set(cuts)].sort((a, b) => a - b),
            );
          } catch (err) {
            got = err as Error;
          }
          if (tooLong) assert.ok(got instanceof Pop3ProtocolError, `accepted: ${JSON.stringify(lines)}`);
          else
            assert.deepEqual(
              got,
              lines.map((l) => 'X'.repeat(l.length)),
            );
        },
      ),
      { numRuns: 300 },
    );
  });
});
