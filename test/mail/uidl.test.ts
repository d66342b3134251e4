/** RFC 1939 §7 unique-id grammar (mail/uidl.ts), shared by the stores and the client. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isValidUidl, MAX_UIDL_LENGTH } from '../../src/mail/uidl.ts';

test('1 to 70 characters in 0x21-0x7E', () => {
  assert.equal(MAX_UIDL_LENGTH, 70);
  for (const ok of ['a', '!', '~', 'x'.repeat(70), '1712345678.M1P2Q3.host', 'a,S=12']) {
    assert.equal(isValidUidl(ok), true, ok);
  }
  for (const bad of ['', 'x'.repeat(71), 'a b', 'tab\there', 'é', 'del\x7f', 'nul\x00']) {
    assert.equal(isValidUidl(bad), false, JSON.stringify(bad));
  }
});
