/** The mapping from failures to -ERR replies (server/errors.ts): pure, one case per storage error kind. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Pop3Error } from '../../src/protocol/errors.ts';
import { errorReply, storageErrorReply } from '../../src/server/errors.ts';
import { catalogues } from '../../src/server/messages.ts';
import { StorageError, type StorageErrorKind } from '../../src/storage/types.ts';

const en = catalogues.en;

describe('storageErrorReply', () => {
  const expected: Record<StorageErrorKind, string> = {
    inuse: '-ERR [IN-USE] Mailbox is locked by another POP3 session.',
    notfound: '-ERR No such message (it was removed by another program).',
    perm: '-ERR [SYS/PERM] Mailbox cannot be opened.',
    temp: '-ERR [SYS/TEMP] Temporary storage failure, try again later.',
    quota: '-ERR [SYS/TEMP] Temporary storage failure, try again later.',
  };
  for (const [kind, line] of Object.entries(expected) as [StorageErrorKind, string][]) {
    test(`${kind} → ${line}`, () => {
      assert.equal(storageErrorReply(kind, en).toLine(), line);
      assert.equal(errorReply(new StorageError(kind, 'detail never shown'), en).toLine(), line);
    });
  }

  test('the text follows the language, the code does not', () => {
    assert.equal(
      storageErrorReply('inuse', catalogues.de).toLine(),
      '-ERR [IN-USE] Das Postfach ist von einer anderen POP3-Sitzung gesperrt.',
    );
  });
});

describe('errorReply', () => {
  test('a Pop3Error is answered as it is', () => {
    const e = new Pop3Error('Logins are allowed every 5 seconds; try again later.', 'LOGIN-DELAY');
    assert.equal(errorReply(e, en), e);
    assert.equal(errorReply(e, en).toLine(), '-ERR [LOGIN-DELAY] Logins are allowed every 5 seconds; try again later.');
  });

  test('anything else is [SYS/TEMP] without its message', () => {
    for (const err of [new Error('secret path /var/mail'), 'a string', undefined]) {
      assert.equal(errorReply(err, en).toLine(), '-ERR [SYS/TEMP] Internal error, try again later.');
    }
  });
});
