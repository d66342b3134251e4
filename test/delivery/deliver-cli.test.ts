/** `postern deliver`: the real command, its stored result and its sysexits exit codes. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sortByDelivery } from '../helpers/maildir-order.ts';
import { BIN } from '../helpers/realServer.ts';
import { immutable, mutable, run } from './helpers.ts';

describe('postern deliver', () => {
  let dir: string;
  let config: string;
  const newDir = (user: string) => join(dir, 'mail', user, 'Maildir', 'new');
  const stored = (user: string) => {
    try {
      return sortByDelivery(readdirSync(newDir(user))).map((n) => readFileSync(join(newDir(user), n), 'latin1'));
    } catch {
      return [];
    }
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'postern-deliver-'));
    config = join(dir, 'postern.toml');
    writeFileSync(
      config,
      '[storage]\nroot = "mail"\n[auth]\nusers_file = "users"\n[lmtp]\nsocket = "lmtp.sock"\nrecipient_delimiter = "+"\n',
    );
    writeFileSync(
      join(dir, 'users'),
      ['alice:{PLAIN}pw::::::', 'full:{PLAIN}pw::::::quota_messages=1', 'ro:{PLAIN}pw::::::'].join('\n') + '\n',
    );
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('delivers stdin with Return-Path and Delivered-To, drops an mbox From_ line, exits 0', async () => {
    const msg = 'From sender@example.net Thu Jan  1 00:00:00 2026\nSubject: hi\n\nbody\n.\n';
    const r = await run(['deliver', '-c', config, '-u', 'alice+tag@example.com', '-f', 'sender@example.net'], msg);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(stored('alice'), [
      'Return-Path: <sender@example.net>\nDelivered-To: alice+tag@example.com\nSubject: hi\n\nbody\n.\n',
    ]);
  });

  test('-n adds no headers; -a sets Delivered-To; CRLF input is stored with LF', async () => {
    let r = await run(['deliver', '-c', config, '-u', 'alice', '-n'], 'Subject: plain\r\n\r\nx\r\n');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(stored('alice').at(-1), 'Subject: plain\n\nx\n');
    r = await run(['deliver', '-c', config, '-u', 'alice', '-a', 'Alice@Example.COM'], 'Subject: a\n\nx\n');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(stored('alice').at(-1), 'Delivered-To: Alice@Example.COM\nSubject: a\n\nx\n');
  });

  test('unknown user: EX_NOUSER (67)', async () => {
    const r = await run(['deliver', '-c', config, '-u', 'nobody'], 'Subject: x\n\nx\n');
    assert.equal(r.status, 67);
    assert.match(r.stderr, /nobody: no such user/);
  });

  test('usage errors: EX_USAGE (64)', async () => {
    assert.equal((await run(['deliver', '-c', config], 'x')).status, 64);
    assert.equal((await run(['deliver', '-c', config, '-u', 'alice', '--bogus'], 'x')).status, 64);
    assert.equal((await run(['deliver', '--help'])).status, 0);
  });

  test('over quota: EX_CANTCREAT (73); with [quota] tempfail: EX_TEMPFAIL (75)', async () => {
    assert.equal((await run(['deliver', '-c', config, '-u', 'full'], 'Subject: 1\n\nx\n')).status, 0);
    const r = await run(['deliver', '-c', config, '-u', 'full'], 'Subject: 2\n\nx\n');
    assert.equal(r.status, 73, r.stderr);
    assert.match(r.stderr, /mailbox is full/);
    const temp = join(dir, 'tempfail.toml');
    writeFileSync(temp, `${readFileSync(config, 'utf8')}[quota]\ntempfail = true\n`);
    assert.equal((await run(['deliver', '-c', temp, '-u', 'full'], 'Subject: 3\n\nx\n')).status, 75);
    assert.equal(stored('full').length, 1);
  });

  test('a config error or an unwritable store: EX_TEMPFAIL (75), so the MTA keeps the message', async () => {
    const bad = join(dir, 'bad.toml');
    writeFileSync(bad, '[storage]\nrooot = "x"\n');
    const r = await run(['deliver', '-c', bad, '-u', 'alice'], 'Subject: x\n\nx\n');
    assert.equal(r.status, 75);
    assert.match(r.stderr, /config error/);
  });

  test('a Maildir it may not write (EACCES): EX_TEMPFAIL (75), never a bounce', (t) => {
    // Root ignores permissions, so as root the command runs as nobody; the Maildir stays root's.
    const asRoot = process.getuid?.() === 0;
    const mail = join(dir, 'mail', 'ro', 'Maildir');
    mkdirSync(mail, { recursive: true, mode: 0o500 });
    if (asRoot) {
      // nobody must reach the config and the users file, but not write the Maildir.
      chmodSync(dir, 0o755);
      chmodSync(join(dir, 'mail'), 0o755);
      chmodSync(join(dir, 'mail', 'ro'), 0o755);
      chmodSync(mail, 0o755);
      chmodSync(config, 0o644);
      chmodSync(join(dir, 'users'), 0o644);
    }
    const r = spawnSync(process.execPath, [BIN, 'deliver', '-c', config, '-u', 'ro'], {
      input: 'Subject: x\n\nx\n',
      encoding: 'utf8',
      timeout: 30_000,
      ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
    });
    if (r.error && !process.env.CI) return t.skip(`cannot run the command as nobody: ${r.error.message}`);
    assert.equal(r.status, 75, r.stderr);
    assert.match(r.stderr, /temporary failure.*EACCES/);
    assert.deepEqual(readdirSync(mail), [], 'nothing written');
  });

  test('a Maildir the file system refuses (EPERM, an immutable new/): EX_TEMPFAIL (75), nothing stored', async (t) => {
    const mail = join(dir, 'mail', 'alice', 'Maildir');
    const before = stored('alice').length;
    const lock = immutable(join(mail, 'new'));
    if (lock !== null && !process.env.CI) return t.skip(lock);
    try {
      const r = await run(['deliver', '-c', config, '-u', 'alice'], 'Subject: eperm\n\nx\n');
      assert.equal(r.status, 75, r.stderr);
      assert.match(r.stderr, /temporary failure.*EPERM/);
    } finally {
      mutable(join(mail, 'new'));
    }
    assert.equal(stored('alice').length, before);
    assert.deepEqual(readdirSync(join(mail, 'tmp')), [], 'the abandoned copy is removed from tmp/');
  });
});
