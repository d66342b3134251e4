import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { apopTimestamp, verifyApop } from '../../src/auth/apop.ts';

// RFC 1939 §7, the example exchange.
const TIMESTAMP = '<1896.697170952@dbc.mtview.ca.us>';
const SECRET = 'tanstaaf';
const DIGEST = 'c4c9334bac560ecc979e58001b3e22fb';

describe('APOP', () => {
  it('accepts the RFC 1939 example digest', () => {
    assert.equal(verifyApop(SECRET, TIMESTAMP, DIGEST), true);
  });

  it('accepts the digest in upper-case hex', () => {
    assert.equal(verifyApop(SECRET, TIMESTAMP, DIGEST.toUpperCase()), true);
  });

  it('refuses a wrong secret, another timestamp and a wrong digest', () => {
    assert.equal(verifyApop('tanstaaF', TIMESTAMP, DIGEST), false);
    assert.equal(verifyApop(SECRET, '<1896.697170953@dbc.mtview.ca.us>', DIGEST), false);
    assert.equal(verifyApop(SECRET, TIMESTAMP, `${DIGEST.slice(0, -1)}c`), false);
  });

  it('refuses digests that are not 32 hex digits without throwing', () => {
    for (const d of ['', DIGEST.slice(0, 31), `${DIGEST}0`, `${DIGEST.slice(0, 31)}g`, ` ${DIGEST.slice(1)}`]) {
      assert.equal(verifyApop(SECRET, TIMESTAMP, d), false, JSON.stringify(d));
    }
  });

  it('makes a fresh msg-id timestamp for every greeting', () => {
    const a = apopTimestamp('mail.example.org');
    const b = apopTimestamp('mail.example.org');
    assert.match(a, /^<\d+\.[0-9a-f]{24}@mail\.example\.org>$/);
    assert.notEqual(a, b);
    assert.match(apopTimestamp('bad host>\r\n'), /@badhost>$/);
  });
});
