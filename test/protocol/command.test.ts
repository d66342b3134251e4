import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import { parseCommand, parseMsn, parseNonNegative } from '../../src/protocol/command.ts';

const parse = (s: string | Buffer) => parseCommand(typeof s === 'string' ? Buffer.from(s, 'utf8') : s);

describe('parseCommand', () => {
  it('upper-cases the keyword and splits the arguments on single spaces', () => {
    assert.deepEqual(parse('stat'), { verb: 'STAT', args: [], rest: '' });
    assert.deepEqual(parse('List 1'), { verb: 'LIST', args: ['1'], rest: '1' });
    assert.deepEqual(parse('TOP 1 10'), { verb: 'TOP', args: ['1', '10'], rest: '1 10' });
    assert.deepEqual(parse('apop mrose c4c9334bac560ecc979e58001b3e22fb'), {
      verb: 'APOP',
      args: ['mrose', 'c4c9334bac560ecc979e58001b3e22fb'],
      rest: 'mrose c4c9334bac560ecc979e58001b3e22fb',
    });
    assert.deepEqual(parse('AUTH PLAIN'), { verb: 'AUTH', args: ['PLAIN'], rest: 'PLAIN' });
    assert.deepEqual(parse('XTND1234'), { verb: 'XTND1234', args: [], rest: '' });
  });

  it('keeps the rest of the line unsplit, spaces included (PASS)', () => {
    assert.deepEqual(parse('PASS  my secret  pass '), {
      verb: 'PASS',
      args: ['', 'my', 'secret', '', 'pass', ''],
      rest: ' my secret  pass ',
    });
  });

  it('treats a keyword followed by one space and nothing else as having no arguments', () => {
    assert.deepEqual(parse('NOOP '), { verb: 'NOOP', args: [], rest: '' });
  });

  it('decodes the rest as UTF-8 (RFC 6856) and keeps invalid bytes as U+FFFD', () => {
    assert.deepEqual(parse('USER jörg'), { verb: 'USER', args: ['jörg'], rest: 'jörg' });
    assert.deepEqual(parse('PASS pässwörd 密码'), { verb: 'PASS', args: ['pässwörd', '密码'], rest: 'pässwörd 密码' });
    const r = parse(Buffer.from([0x50, 0x41, 0x53, 0x53, 0x20, 0x61, 0xe9]));
    assert.deepEqual(r, { verb: 'PASS', args: ['a\ufffd'], rest: 'a\ufffd' });
  });

  it('rejects empty lines, NUL, a missing or long keyword, and keywords that are not letters and digits', () => {
    const bad: (string | Buffer)[] = [
      '',
      ' STAT',
      ' ',
      'ST\0AT',
      'PASS a\0b',
      Buffer.from([0x00]),
      'TOOLONGKW',
      'TOOLONGKEYWORD 1',
      'LI-ST',
      'LIST\t1',
      'STAT\r',
      'ÜSER x',
      'RETR\xff',
      '\x01',
    ];
    for (const line of bad) {
      const r = parse(line);
      assert.ok('error' in r, `should reject ${JSON.stringify(line)}`);
      assert.equal(typeof r.error, 'string');
      assert.ok(r.error.length > 0);
    }
  });
});

describe('parseMsn / parseNonNegative', () => {
  it('accepts decimal digits in range', () => {
    assert.equal(parseMsn('1'), 1);
    assert.equal(parseMsn('42'), 42);
    assert.equal(parseMsn('007'), 7);
    assert.equal(parseMsn('2147483647'), 2 ** 31 - 1);
    assert.equal(parseMsn('0002147483647'), 2 ** 31 - 1);
    assert.equal(parseNonNegative('0'), 0);
    assert.equal(parseNonNegative('000'), 0);
    assert.equal(parseNonNegative('10'), 10);
    assert.equal(parseNonNegative('2147483647'), 2 ** 31 - 1);
  });

  it('rejects everything else', () => {
    const bad = [
      undefined,
      '',
      '2147483648',
      '4294967296',
      '99999999999999999999999',
      '1'.repeat(400),
      '-1',
      '+1',
      ' 1',
      '1 ',
      '1x',
      'x1',
      '0x10',
      '1e3',
      '1.0',
      '1_000',
      'Infinity',
      'NaN',
      '١', // Arabic-Indic digit one
      '１', // fullwidth digit one
    ];
    for (const arg of bad) {
      assert.equal(parseMsn(arg), null, `parseMsn(${JSON.stringify(arg)})`);
      assert.equal(parseNonNegative(arg), null, `parseNonNegative(${JSON.stringify(arg)})`);
    }
    assert.equal(parseMsn('0'), null);
    assert.equal(parseMsn('0000'), null);
  });
});
