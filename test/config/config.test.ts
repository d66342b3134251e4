import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { withReference } from '../../scripts/config-reference.ts';
import { ConfigError, parseConfig } from '../../src/config/config.ts';

const TLS = '[tls]\ncert = "c.pem"\nkey = "k.pem"\n';

test('defaults: no listeners, Maildir under ./var, RFC 1939 idle timeout', () => {
  const c = parseConfig('', '/etc/postern/postern.toml');
  assert.deepEqual(c.listen, []);
  assert.equal(c.storage.root, '/etc/postern/var/mail');
  assert.equal(c.limits.idleTimeoutMs, 600_000);
});

test('an unknown key is an error naming the key and its line', () => {
  const src = `${TLS}\n[server]\ngreeting = "hi"\ngreting = "typo"\n`;
  assert.throws(
    () => parseConfig(src, 'p.toml'),
    (e: Error) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /^p\.toml:7: unknown key "greting" in \[server\]/);
      return true;
    },
  );
});

test('a wrong type is an error naming the key and its line', () => {
  const src = `${TLS}[[listen]]\nport = 110\n\n[[listen]]\nport = "995"\n`;
  assert.throws(() => parseConfig(src, 'p.toml'), /p\.toml:8: "listen\.port" must be an integer, got string "995"$/);
  assert.throws(
    () => parseConfig('[limits]\nidle_timeout = 60\n', 'p.toml'),
    /p\.toml:2: "limits\.idle_timeout" must be at least 600/,
  );
  assert.throws(() => parseConfig('[bogus]\nx = 1\n', 'p.toml'), /p\.toml:1: unknown key or table "bogus"/);
  assert.throws(() => parseConfig('a = [1,\n', 'p.toml'), /p\.toml:\d+: /);
  assert.throws(
    () => parseConfig('[[listen]]\nport = 110\ntls = "none"\n\n[[listen]]\naddress = "::1"\n', 'p.toml'),
    /^ConfigError: p\.toml:5: \[\[listen\]\] #2 needs "port"$/,
  );
  assert.throws(() => parseConfig('listen = 3\n', 'p.toml'), /p\.toml:1: "listen" must be an array of tables/);
});

test('checked values carry the schema types: enums, defaults, seconds to ms', () => {
  const c = parseConfig('[[listen]]\nport = 110\ntls = "none"\n[storage]\nstatement_timeout = 1.5\n', '/p.toml');
  assert.deepEqual(c.listen, [{ address: '127.0.0.1', port: 110, tls: 'none', proxyProtocol: false }]);
  assert.equal(c.storage.postgres.statementTimeoutMs, 1500);
  assert.equal(c.auth.usersFile, '/var/users');
  assert.deepEqual(c.policy, { loginDelaySeconds: 0, expireDays: 'never' });
});

test('a TLS listener without a certificate is refused', () => {
  assert.throws(() => parseConfig('[[listen]]\nport = 995\ntls = "implicit"\n'), /no cert and key/);
});

test('README configuration reference matches the schema', () => {
  const readme = readFileSync('README.md', 'utf8');
  assert.equal(readme, withReference(readme), 'run `npm run config-reference -- --write`');
});
