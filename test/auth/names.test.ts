import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isValidUserName, mailboxIdProblem, userNameProblem } from '../../src/auth/names.ts';

describe('user names', () => {
  it('accepts ordinary, e-mail style and UTF-8 names (RFC 6856)', () => {
    for (const n of ['alice', 'alice@example.org', 'a.b-c_d+e', 'josé', '用户', '😀', 'x'.repeat(255)]) {
      assert.equal(userNameProblem(n), null, n);
    }
  });

  it('counts the 255-byte limit in UTF-8 bytes', () => {
    assert.equal(isValidUserName('é'.repeat(127)), true); // 254 bytes
    assert.equal(isValidUserName('é'.repeat(128)), false); // 256 bytes
    assert.equal(isValidUserName('x'.repeat(256)), false);
  });

  it('refuses empty names, separators, whitespace, controls, NUL and path tricks', () => {
    const bad = [
      '',
      'a:b',
      'a b',
      'a\tb',
      '\u00a0a',
      'a\u3000',
      'a\nb',
      'a\r',
      'a\0',
      'a\u007f',
      'a\u0085',
      'a/b',
      'a\\b',
      '.',
      '..',
    ];
    for (const n of bad) assert.notEqual(userNameProblem(n), null, JSON.stringify(n));
  });

  it("refuses a leading '#', which the users file reads as a comment; '#' elsewhere is fine", () => {
    assert.match(userNameProblem('#evil') ?? '', /'#'/);
    assert.match(userNameProblem('#') ?? '', /'#'/);
    assert.equal(userNameProblem('ev#il'), null);
    assert.equal(mailboxIdProblem('#box'), null); // a mailbox id lives inside a field, never at a line start
  });

  it('refuses lone surrogates, which cannot be UTF-8', () => {
    assert.notEqual(userNameProblem('a\ud800'), null);
    assert.equal(userNameProblem('a\ud83d\ude00'), null);
  });

  it('applies the same rules to mailbox ids', () => {
    assert.equal(mailboxIdProblem('shared-box'), null);
    assert.match(mailboxIdProblem('../etc') ?? '', /mailbox id/);
  });
});
