/** The accounts file: defaults, overrides, and errors that name the key. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { accountFromUrl, FetchConfigError, parseAccounts, parseSize } from '../../src/fetch/config.ts';

const FILE = 'fetch.toml';

describe('fetch accounts file', () => {
  it('applies [defaults], lets an account replace the default delivery, keys the state by name, user, host and port', () => {
    const [a, b] = parseAccounts(
      `state_dir = "/var/tmp/st"
[defaults]
maildir = "/home/me/Mail"
keep = false
max_size = "10M"

[[account]]
name = "work"
host = "pop.example.com"
user = "me@example.com"
password_command = "pass show work"

[[account]]
host = "pop.example.net"
port = 110
tls = "starttls"
user = "me"
password_env = "NET_PW"
mbox = "/home/me/mbox"
keep = true
keep_days = 14
auth = ["SCRAM-SHA-256", "cram-md5"]
`,
      FILE,
    );
    assert.equal(a.name, 'work');
    assert.equal(a.port, 995);
    assert.equal(a.tls, 'implicit');
    assert.deepEqual(a.deliver, { kind: 'maildir', path: '/home/me/Mail' });
    assert.equal(a.keep, false);
    assert.equal(a.maxSize, 10 * 1024 * 1024);
    assert.deepEqual(a.password, { command: 'pass show work' });
    // Keyed by the account: two accounts on one mailbox never share a state; the old name is kept for migration.
    assert.equal(a.stateFile, '/var/tmp/st/work=me@example.com@pop.example.com_995.json');
    assert.equal(a.legacyStateFile, '/var/tmp/st/me@example.com@pop.example.com.json');
    assert.equal(b.name, 'me@pop.example.net');
    assert.equal(b.stateFile, '/var/tmp/st/me@pop.example.net_110.json');
    assert.deepEqual(b.deliver, { kind: 'mbox', path: '/home/me/mbox' });
    assert.deepEqual(b.auth, ['SCRAM-SHA-256', 'CRAM-MD5']);
    assert.equal(b.keepDays, 14);
    assert.equal(b.password !== 'prompt' && 'env' in b.password && b.password.env, 'NET_PW');
  });

  it('refuses unknown keys, missing delivery, two deliveries, duplicate names, bad values', () => {
    const bad = (text: string, re: RegExp) =>
      assert.throws(
        () => parseAccounts(text, FILE),
        (e: unknown) => e instanceof FetchConfigError && re.test(e.message),
      );
    const base = 'host = "h"\nuser = "u"\n';
    bad(`[[account]]\n${base}maildir = "/m"\npasword_env = "X"`, /unknown key "pasword_env"/);
    bad(`[[account]]\n${base}`, /exactly one of "maildir", "mbox" and "mda"/);
    bad(`[[account]]\n${base}maildir = "/m"\nmbox = "/b"`, /got maildir, mbox/);
    bad(
      `[[account]]\nname="x"\n${base}maildir="/m"\n[[account]]\nname="x"\n${base}maildir="/m"`,
      /two accounts are named "x"/,
    );
    bad(`[[account]]\n${base}maildir = "/m"\ntls = "ssl"`, /"tls" must be/);
    bad(`[[account]]\n${base}maildir = "/m"\nauth = "DIGEST-MD5"`, /unknown auth mechanism/);
    bad(`[[account]]\n${base}maildir = "/m"\nport = 99999`, /"port"/);
    bad('[[account]]\nhost = "h"\nmaildir = "/m"', /\[\[account\]\] #1 needs "user"/);
    bad('x = 1', /unknown key "x"/);
    bad('[[account]\n', /fetch.toml:1/);
  });

  it('sizes and URLs', () => {
    assert.equal(parseSize('25M', 'x'), 25 * 1024 * 1024);
    assert.equal(parseSize('100k', 'x'), 102400);
    assert.equal(parseSize(5000, 'x'), 5000);
    assert.throws(() => parseSize('lots', 'x'), FetchConfigError);
    assert.deepEqual(accountFromUrl('pop3s://me%40example.org@mail.example.org'), {
      name: 'me@example.org@mail.example.org',
      host: 'mail.example.org',
      port: 995,
      tls: 'implicit',
      user: 'me@example.org',
    });
    assert.equal(accountFromUrl('pop3://u@h:1110').tls, 'starttls');
    assert.equal(accountFromUrl('pop3://u@h?tls=none').tls, 'none');
    assert.throws(() => accountFromUrl('pop3s://u:secret@h'), /password in the URL/);
    assert.throws(() => accountFromUrl('imaps://u@h'), FetchConfigError);
  });
});
