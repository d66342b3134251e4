/** `postern mailbox stats|list|import`: the real command against a temporary Maildir tree. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { run } from '../delivery/helpers.ts';

describe('postern mailbox', () => {
  let dir: string;
  let config: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'postern-mailbox-'));
    config = join(dir, 'postern.toml');
    writeFileSync(config, '[storage]\nroot = "mail"\n[auth]\nusers_file = "users"\n[quota]\nbytes = 1000000\n');
    writeFileSync(join(dir, 'users'), 'alice:{PLAIN}pw::::::quota_messages=10\nbob:{PLAIN}pw::::::\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('import from an mboxrd file, then list and stats', async () => {
    const mbox = join(dir, 'old.mbox');
    writeFileSync(
      mbox,
      [
        'From a@example.net Thu Jan  1 00:00:00 2026',
        'Date: Thu, 1 Jan 2026 00:00:00 +0000',
        'Subject: =?UTF-8?Q?caf=C3=A9?=',
        '',
        '>From here',
        '',
        'From b@example.net Thu Jan  1 00:00:01 2026',
        'Date: Fri, 2 Jan 2026 00:00:00 +0000',
        'Subject: second',
        ' folded',
        '',
        'two',
        '',
      ].join('\n'),
    );
    const imp = await run(['mailbox', 'import', 'alice', mbox, '-c', config]);
    assert.equal(imp.status, 0, imp.stderr);
    assert.match(imp.stdout, /2 messages imported/);

    const list = await run(['mailbox', 'list', 'alice', '-c', config]);
    assert.equal(list.status, 0, list.stderr);
    const rows = list.stdout
      .trimEnd()
      .split('\n')
      .map((l) => l.split('\t'));
    assert.equal(rows.length, 2);
    assert.deepEqual(
      rows.map((r) => [r[0], r[3], r[4]]),
      [
        ['1', 'Thu, 1 Jan 2026 00:00:00 +0000', 'café'],
        ['2', 'Fri, 2 Jan 2026 00:00:00 +0000', 'second folded'],
      ],
    );
    // Size as POP3 reports it: CRLF line endings.
    const first = 'Date: Thu, 1 Jan 2026 00:00:00 +0000\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\n\r\nFrom here\r\n';
    assert.equal(Number(rows[0][2]), first.length);
    assert.ok(rows[0][1].length > 0, 'UIDL');

    const json = await run(['mailbox', 'stats', 'alice', '--json', '-c', config]);
    const stats = JSON.parse(json.stdout) as {
      messages: number;
      bytes: number;
      quota: { bytes: number; messages: number };
    };
    assert.equal(stats.messages, 2);
    assert.deepEqual(stats.quota, { bytes: 1000000, messages: 10 });
    const text = await run(['mailbox', 'stats', 'alice', '-c', config]);
    assert.match(text.stdout, /messages {2}2 of 10 \(20\.0%\)/);
  });

  test('import from a Maildir (cur/ and new/, oldest first)', async () => {
    const src = join(dir, 'other-maildir');
    for (const d of ['cur', 'new', 'tmp']) mkdirSync(join(src, d), { recursive: true });
    writeFileSync(join(src, 'cur', '1700000002.M1P1.host:2,S'), 'Subject: later\n\nb\n');
    writeFileSync(join(src, 'new', '1700000001.M1P1.host'), 'Subject: earlier\n\na\n');
    writeFileSync(join(src, 'tmp', '1700000003.M1P1.host'), 'Subject: half-written\n\n');
    const imp = await run(['mailbox', 'import', 'bob', src, '-c', config]);
    assert.equal(imp.status, 0, imp.stderr);
    assert.match(imp.stdout, /2 messages imported/);
    const list = await run(['mailbox', 'list', 'bob', '-c', config]);
    assert.deepEqual(
      list.stdout
        .trimEnd()
        .split('\n')
        .map((l) => l.split('\t')[4]),
      ['earlier', 'later'],
    );
    assert.equal(readdirSync(join(dir, 'mail', 'bob', 'Maildir', 'new')).length, 2);
  });

  test('errors: unknown user 67, usage 64', async () => {
    assert.equal((await run(['mailbox', 'stats', 'nobody', '-c', config])).status, 67);
    assert.equal((await run(['mailbox', 'stats', '-c', config])).status, 64);
    assert.equal((await run(['mailbox', 'frobnicate', 'alice', '-c', config])).status, 64);
    assert.equal((await run(['mailbox', 'import', 'alice', '-c', config])).status, 64);
    assert.equal((await run(['mailbox', '--help'])).status, 0);
  });
});
