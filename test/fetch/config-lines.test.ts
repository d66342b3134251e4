/** fetch.toml goes through the same TOML engine as postern.toml (src/toml/): every error names file:line. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FetchConfigError, parseAccounts } from '../../src/fetch/config.ts';

function message(text: string): string {
  try {
    parseAccounts(text, 'fetch.toml');
  } catch (e) {
    assert.ok(e instanceof FetchConfigError, String(e));
    return e.message;
  }
  assert.fail('accepted');
}

test('errors name the line of the key, or of the account table', () => {
  const two = '[[account]]\nhost = "a"\nuser = "u"\nmaildir = "/m"\n\n[[account]]\nhost = "b"\nuser = "u"\n';
  assert.match(
    message(`${two}pasword_env = "X"\nmaildir = "/m"\n`),
    /^fetch\.toml:9: \[\[account\]\] #2: unknown key "pasword_env"/,
  );
  assert.match(message(`${two}tls = "ssl"\nmaildir = "/m"\n`), /^fetch\.toml:6: \[\[account\]\] #2: "tls" must be/);
  assert.match(message('[defaults]\nkep = true\n[[account]]\n'), /^fetch\.toml:2: \[defaults\]: unknown key "kep"/);
  assert.match(message('state_dir = "/s"\nstatedir = "/t"\n'), /^fetch\.toml:2: unknown key "statedir"/);
  assert.match(message('[[account]]\nhost = "h"\n['), /^fetch\.toml:3: /);
});
