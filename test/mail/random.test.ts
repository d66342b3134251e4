/** Random hex tokens from the pooled CSPRNG (mail/random.ts): right length, never handed out twice. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { randomHex } from '../../src/mail/random.ts';

describe('randomHex', () => {
  test('tokens of the asked length, all different across several refills of the pool', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const t = randomHex(i % 2 === 0 ? 9 : 8);
      assert.match(t, i % 2 === 0 ? /^[0-9a-f]{18}$/ : /^[0-9a-f]{16}$/);
      assert.ok(!seen.has(t), `token ${t} handed out twice`);
      seen.add(t);
    }
    // Not a constant stream: every hex digit shows up.
    assert.equal(new Set([...seen].join('')).size, 16);
  });

  test('refuses sizes it cannot serve', () => {
    for (const n of [0, -1, 1.5, 257]) assert.throws(() => randomHex(n), RangeError);
  });
});
