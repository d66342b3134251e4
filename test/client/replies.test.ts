/**
 * The LIST and UIDL listings: the hand-written line parsers against the grammar they replace (the regular
 * expressions of RFC 1939 §5 and §7 they were written from), and messageList()'s pairing of the two listings.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Pop3Client } from '../../src/client/client.ts';
import { Pop3ProtocolError } from '../../src/client/errors.ts';
import { parseListLine, parseUidlLine } from '../../src/client/replies.ts';
import { isValidUidl } from '../../src/mail/uidl.ts';
import { FakeServer, type Step } from './fake.ts';

/** The grammar as it was written before: a regular expression per listing. */
function byRegex(kind: 'list' | 'uidl', text: string): string {
  if (kind === 'list') {
    const m = /^(\d+) (\d+)/.exec(text);
    return m ? JSON.stringify({ number: Number(m[1]), size: Number(m[2]) }) : 'refused';
  }
  const m = /^(\d+) (\S+)\s*$/.exec(text);
  return m && isValidUidl(m[2]) ? JSON.stringify({ number: Number(m[1]), uidl: m[2] }) : 'refused';
}

function byHand(kind: 'list' | 'uidl', text: string): string {
  try {
    return JSON.stringify(kind === 'list' ? parseListLine('LIST', text) : parseUidlLine(text));
  } catch (err) {
    assert.ok(err instanceof Pop3ProtocolError);
    return 'refused';
  }
}

describe('listing lines', () => {
  it('parse as the regular expressions did, on edge cases and on random lines (fast-check)', () => {
    const edges = [
      '1 200',
      '1 200 trailing words',
      '12 34x',
      '1  2',
      ' 1 2',
      '1',
      '1 ',
      'a 1',
      '007 008',
      '123456789012345678901 5',
      '1 abc',
      '1 abc \t ',
      '1 abc d',
      '1 \u00a0abc',
      '1 abc\u00a0\u2028\ufeff',
      '1 ab\u00a0c',
      '1 abcé',
      `1 ${'x'.repeat(70)}`,
      `1 ${'x'.repeat(71)}`,
    ];
    for (const t of edges) {
      for (const kind of ['list', 'uidl'] as const) assert.equal(byHand(kind, t), byRegex(kind, t), JSON.stringify(t));
    }
    const char = fc.constantFrom(...'0123456789  \t\r\u000baZ~!.-\u00a0\u2028\u3000\ufeffé\u0000');
    fc.assert(
      fc.property(fc.array(char, { maxLength: 12 }), (chars) => {
        const t = chars.join('');
        assert.equal(byHand('list', t), byRegex('list', t), JSON.stringify(t));
        assert.equal(byHand('uidl', t), byRegex('uidl', t), JSON.stringify(t));
      }),
      { numRuns: 20_000 },
    );
  });
});

describe('messageList()', () => {
  async function listing(uidl: string): Promise<Pop3Client> {
    const steps: Step[] = [
      { reply: '+OK hi\r\n' },
      { expect: 'CAPA', reply: '+OK\r\nUSER\r\nUIDL\r\n.\r\n' },
      { expect: 'USER u', reply: '+OK\r\n' },
      { expect: 'PASS p', reply: '+OK\r\n' },
      { expect: 'CAPA', reply: '+OK\r\nUSER\r\nUIDL\r\n.\r\n' },
      { expect: 'LIST', reply: '+OK\r\n1 10\r\n2 20\r\n3 30\r\n.\r\n' },
      { expect: 'UIDL', reply: `+OK\r\n${uidl}.\r\n` },
    ];
    return Pop3Client.connect({
      host: 'x',
      tls: 'none',
      socket: new FakeServer(steps),
      allowInsecureAuth: true,
      auth: { user: 'u', password: 'p' },
    });
  }

  it('pairs each message with its unique-id, whatever order the server lists them in', async () => {
    for (const uidl of ['1 a\r\n2 b\r\n3 c\r\n', '3 c\r\n1 a\r\n2 b\r\n', '1 a\r\n3 c\r\n2 b\r\n']) {
      const client = await listing(uidl);
      assert.deepEqual(await client.messageList(), [
        { number: 1, uidl: 'a', size: 10 },
        { number: 2, uidl: 'b', size: 20 },
        { number: 3, uidl: 'c', size: 30 },
      ]);
      client.destroy();
    }
  });

  it('refuses a unique-id listing that lacks a listed message', async () => {
    const client = await listing('1 a\r\n3 c\r\n');
    await assert.rejects(client.messageList(), (err: unknown) => {
      assert.ok(err instanceof Pop3ProtocolError);
      assert.match(err.message, /no entry for message 2/);
      return true;
    });
    client.destroy();
  });
});
