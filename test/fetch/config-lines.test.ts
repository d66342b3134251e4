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
    /^fetch\.toml:9: unknown key "pasword_env" in \[\[account\]\] #2/,
  );
  assert.match(
    message(`${two}tls = "ssl"\nmaildir = "/m"\n`),
    /^fetch\.toml:9: \[\[account\]\] #2: "tls" must be one of "implicit", "starttls", "none", got string "ssl"$/,
  );
  assert.match(message('[defaults]\nkep = true\n[[account]]\n'), /^fetch\.toml:2: unknown key "kep" in \[defaults\]/);
  // A value from [defaults] is named where it is written; a missing key at its account's table.
  assert.match(
    message(`[defaults]\nkeep = true\nmax_size = "lots"\n\n${two}maildir = "/m"\n`),
    /^fetch\.toml:3: \[defaults\]: "max_size": a size must be/,
  );
  assert.match(
    message(`${two}maildir = "/m"\ntimeout = "soon"\n`),
    /^fetch\.toml:10: \[\[account\]\] #2: "timeout" must be seconds/,
  );
  assert.match(
    message(`${two}maildir = ""\n`),
    /^fetch\.toml:9: \[\[account\]\] #2: "maildir" must be a non-empty string/,
  );
  assert.match(
    message('\n[[account]]\nhost = "h"\nmaildir = "/m"\n'),
    /^fetch\.toml:2: \[\[account\]\] #1 needs "user"$/,
  );
  assert.match(message('state_dir = "/s"\nstatedir = "/t"\n'), /^fetch\.toml:2: unknown key "statedir"/);
  assert.match(message('[[account]]\nhost = "h"\n['), /^fetch\.toml:3: /);
});
