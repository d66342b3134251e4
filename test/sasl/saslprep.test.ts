import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { saslprep } from '../../src/auth/sasl/saslprep.ts';

describe('SASLprep (RFC 4013)', () => {
  it('gives the RFC 4013 §3 examples’ results', () => {
    assert.equal(saslprep('I\u00ADX'), 'IX'); // soft hyphen mapped to nothing
    assert.equal(saslprep('user'), 'user'); // no transformation
    assert.equal(saslprep('USER'), 'USER'); // case preserved
    assert.equal(saslprep('\u00AA'), 'a'); // NFKC
    assert.equal(saslprep('\u2168'), 'IX'); // NFKC
    assert.equal(saslprep('\u0007'), null); // prohibited character
  });

  it('maps non-ASCII spaces to SPACE and drops zero-width characters', () => {
    assert.equal(saslprep('a\u00A0b\u3000c'), 'a b c');
    assert.equal(saslprep('a\u200Bb\uFEFFc'), 'abc');
  });

  it('refuses controls, private use, non-characters and lone surrogates', () => {
    for (const s of [
      'a\u0000',
      '\u0085',
      '\uE000',
      '\uFDD0',
      '\uFFFF',
      'x\uD800',
      '\u{10FFFF}',
      '\u202E',
      '\u{E0001}',
    ]) {
      assert.equal(saslprep(s), null, JSON.stringify(s));
    }
  });

  it('keeps ordinary Unicode passwords (NFC form)', () => {
    assert.equal(saslprep('pässwörd ☃'), 'pässwörd ☃');
    assert.equal(saslprep('pa\u0308ss'), 'päss');
  });
});
