/**
 * The LMTP listener driven by a real client, swaks --protocol LMTP (RFC 2033): recipients, one reply per
 * recipient after DATA, quotas, transient errors, byte-exact storage, and the Unix socket.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MemoryStore } from '../../src/storage/memory/store.ts';
import { skipUnlessCi } from '../helpers/peers.ts';
import { immutable, mutable, replies, startTestLmtp, swaks, type TestLmtp } from './helpers.ts';

const hasSwaks = (await swaks(['--version'])).code === 0;

describe('LMTP with swaks', { skip: skipUnlessCi(!hasSwaks && 'swaks is not installed') }, () => {
  let t: TestLmtp;
  before(async () => {
    t = await startTestLmtp({
      users: {
        alice: [],
        Alice: [],
        dup: [],
        bob: [],
        'carol@example.org': [],
        full: ['quota_messages=1'],
        small: ['quota_bytes=600'],
      },
      toml: '[lmtp]\nport = 0\nrecipient_delimiter = "+"\n',
    });
  });
  after(() => t.close());

  const server = () => ['--server', '127.0.0.1', '--port', String(t.port)];

  test('single recipient: 250 after DATA, Return-Path and Delivered-To added', async () => {
    const r = await swaks([...server(), '--from', 'sender@example.net', '--to', 'alice@example.com']);
    assert.equal(r.code, 0, r.out);
    const rs = replies(r.out);
    assert.match(rs[0], /^220 lmtp\.test LMTP/);
    assert.match(rs.at(-2) ?? '', /^250 2\.6\.0 <alice@example\.com> delivered/);
    const [msg] = t.messages('alice');
    const text = msg.toString();
    assert.ok(text.startsWith('Return-Path: <sender@example.net>\nDelivered-To: alice@example.com\n'), text);
    assert.match(text, /\nSubject: test /);
  });

  test('several recipients: one reply per recipient, each copy with its own Delivered-To', async () => {
    const r = await swaks([
      ...server(),
      '--from',
      '<>',
      '--to',
      'bob@example.com,carol@example.org,bob+lists@example.com',
    ]);
    assert.equal(r.code, 0, r.out);
    const afterData = replies(r.out).slice(replies(r.out).findIndex((l) => l.startsWith('354')) + 1);
    assert.equal(afterData.filter((l) => l.startsWith('250 2.6.0')).length, 3, r.out);
    const bob = t.messages('bob').map(String);
    assert.equal(bob.length, 2);
    assert.ok(bob.some((m) => m.includes('Delivered-To: bob@example.com\n')));
    assert.ok(bob.some((m) => m.includes('Delivered-To: bob+lists@example.com\n')));
    assert.ok(
      bob.every((m) => m.startsWith('Return-Path: <>\n')),
      'null sender',
    );
    const carol = t.messages('carol@example.org').map(String);
    assert.equal(carol.length, 1);
    assert.ok(carol[0].includes('Delivered-To: carol@example.org\n'));
  });

  /** The replies after `354`: one per accepted RCPT (RFC 2033 §4.2), then QUIT's. */
  const dataReplies = (out: string) => {
    const rs = replies(out);
    return rs.slice(rs.findIndex((l) => l.startsWith('354')) + 1).filter((l) => !l.startsWith('221'));
  };

  test('recipients that differ only by case are two users: two replies after DATA, one copy each', async () => {
    const r = await swaks([...server(), '--timeout', '15', '--to', 'alice@example.com,Alice@example.com']);
    assert.equal(r.code, 0, r.out);
    const after = dataReplies(r.out);
    assert.equal(after.length, 2, r.out);
    assert.match(after[0], /^250 2\.6\.0 <alice@example\.com> delivered/);
    assert.match(after[1], /^250 2\.6\.0 <Alice@example\.com> delivered/);
    assert.ok(t.messages('alice').some((m) => m.includes('Delivered-To: alice@example.com\n')));
    assert.equal(t.messages('Alice').length, 1);
    assert.ok(t.messages('Alice')[0].includes('Delivered-To: Alice@example.com\n'));
  });

  test('a repeated identical RCPT: one reply per accepted RCPT, in order, and one copy', async () => {
    const r = await swaks([
      ...server(),
      '--timeout',
      '15',
      '--to',
      'dup@example.com,bob@example.com,dup@example.com,DUP@example.com',
    ]);
    assert.equal(r.code, 0, r.out);
    const after = dataReplies(r.out);
    assert.equal(after.length, 4, r.out);
    assert.match(after[0], /^250 2\.6\.0 <dup@example\.com> delivered/);
    assert.match(after[1], /^250 2\.6\.0 <bob@example\.com> delivered/);
    assert.equal(after[2], after[0], 'the repeat shares the first copy and its reply');
    // DUP@ names no user of its own; it falls back to the lower-cased `dup`, with its own Delivered-To.
    assert.match(after[3], /^250 2\.6\.0 <DUP@example\.com> delivered/);
    const dup = t.messages('dup').map(String);
    assert.equal(dup.length, 2, 'one copy per distinct address');
    assert.equal(dup.filter((m) => m.includes('Delivered-To: dup@example.com\n')).length, 1);
  });

  test('unknown user: 550 5.1.1 at RCPT, other recipients still delivered', async () => {
    const before = t.messages('alice').length;
    const r = await swaks([...server(), '--to', 'nobody@example.com,alice@example.com']);
    assert.ok(
      replies(r.out).some((l) => /^550 5\.1\.1 <nobody@example\.com>/.test(l)),
      r.out,
    );
    assert.equal(t.messages('alice').length, before + 1);
    const alone = await swaks([...server(), '--to', 'nobody@example.com']);
    assert.notEqual(alone.code, 0);
    assert.ok(replies(alone.out).some((l) => l.startsWith('550 5.1.1')));
  });

  test('over the message quota: 552 5.2.2 at RCPT; over the size quota: 552 5.2.2 after DATA', async () => {
    const first = await swaks([...server(), '--to', 'full@example.com']);
    assert.equal(first.code, 0, first.out);
    const second = await swaks([...server(), '--to', 'full@example.com']);
    assert.notEqual(second.code, 0);
    assert.ok(
      replies(second.out).some((l) => /^552 5\.2\.2 <full@example\.com>: mailbox is full/.test(l)),
      second.out,
    );
    assert.equal(t.messages('full').length, 1);

    // 600 octets: the first message fits, then one of 700 octets does not (seen only while it streams).
    const fits = await swaks([...server(), '--to', 'small@example.com', '--body', 'x'.repeat(100)]);
    assert.equal(fits.code, 0, fits.out);
    const big = await swaks([...server(), '--to', 'small@example.com,alice@example.com', '--body', 'y'.repeat(700)]);
    const afterData = replies(big.out).slice(replies(big.out).findIndex((l) => l.startsWith('354')) + 1);
    assert.match(afterData[0], /^552 5\.2\.2 <small@example\.com>: message does not fit/, big.out);
    assert.match(afterData[1], /^250 2\.6\.0 <alice@example\.com>/, big.out);
    assert.equal(t.messages('small').length, 1);
    // The abandoned copy left nothing behind in tmp/.
    assert.equal(statSync(join(t.root, 'small', 'Maildir', 'tmp')).isDirectory(), true);
  });

  test('declared SIZE= larger than what is left: refused at RCPT', async () => {
    const s = new Socket();
    const got: string[] = [];
    await new Promise<void>((resolve, reject) => {
      s.connect(t.port, '127.0.0.1', () => resolve());
      s.once('error', reject);
    });
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
    });
    const waitLines = async (n: number) => {
      const deadline = Date.now() + 10_000;
      while (buf.split('\r\n').length - 1 < n) {
        if (Date.now() > deadline) throw new Error(`timeout: ${buf}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await waitLines(1);
    s.write('LHLO t\r\n');
    await waitLines(7);
    s.write('MAIL FROM:<a@b> SIZE=100000\r\nRCPT TO:<small@example.com>\r\n');
    await waitLines(9);
    s.end('QUIT\r\n');
    got.push(...buf.split('\r\n'));
    assert.ok(
      got.some((l) =>
        /^552 5\.2\.2 <small@example\.com>: .*does not fit|^552 5\.2\.2 <small@example\.com>: mailbox is full/.test(l),
      ),
      buf,
    );
  });

  test('a line of a single dot and bare LFs are stored byte for byte, with LF line endings', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-dot-'));
    try {
      // What the message is, and what goes on the wire for it: the "." line dot-stuffed, bare LFs kept.
      const message = Buffer.from('Subject: dots\r\n\r\nfirst\r\n.\r\n..two\r\nbare\nlf\n\nend .\r\n.x\r\n', 'latin1');
      const wire = Buffer.concat([
        Buffer.from(message.toString('latin1').replace(/(^|\r\n)\./g, '$1..'), 'latin1'),
        Buffer.from('.', 'latin1'), // swaks --no-data-fixup appends CRLF after this
      ]);
      const file = join(dir, 'data');
      writeFileSync(file, wire);
      const r = await swaks([
        ...server(),
        '--from',
        'f@x',
        '--to',
        'alice@example.com',
        '--no-data-fixup',
        '--data',
        `@${file}`,
      ]);
      assert.equal(r.code, 0, r.out);
      // Found by content: names made in the same second do not sort by time (the microseconds are not padded).
      const stored = t.messages('alice').find((m) => m.includes('Subject: dots'));
      // Stored as every delivery path stores mail (Postfix, Dovecot, `postern deliver`): LF line endings.
      const expected = Buffer.concat([
        Buffer.from('Return-Path: <f@x>\nDelivered-To: alice@example.com\n'),
        Buffer.from(message.toString('latin1').replaceAll('\r\n', '\n'), 'latin1'),
      ]);
      assert.deepEqual(stored, expected);
      // The size POP3 will announce (in the file name) counts CRLF, as RFC 1939 sizes do.
      const name = readdirSync(join(t.root, 'alice', 'Maildir', 'new')).find((n) =>
        readFileSync(join(t.root, 'alice', 'Maildir', 'new', n)).includes('Subject: dots'),
      );
      const crlfSize = Buffer.byteLength(expected.toString('latin1').replaceAll('\n', '\r\n'), 'latin1');
      assert.match(name ?? '', new RegExp(`,W=${crlfSize}$`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('LMTP: transient and temporary failures', {
  skip: skipUnlessCi(!hasSwaks && 'swaks is not installed'),
}, () => {
  test('a store error answers 451 4.3.0 for that recipient, and nothing is stored', async () => {
    const store = new MemoryStore();
    store.faults.failDeliver = 'temp';
    const t = await startTestLmtp({ users: { alice: [] }, store });
    try {
      const r = await swaks(['--server', '127.0.0.1', '--port', String(t.port), '--to', 'alice@example.com']);
      assert.notEqual(r.code, 0);
      assert.ok(
        replies(r.out).some((l) => /^451 4\.3\.0 <alice@example\.com>/.test(l)),
        r.out,
      );
      assert.equal(store.list('alice').length, 0);
    } finally {
      await t.close();
    }
  });

  test('a permission error (EPERM: an immutable new/) defers with 451 4.3.0, never bounces', async (c) => {
    const t = await startTestLmtp({ users: { alice: [], bob: [] } });
    const server = ['--server', '127.0.0.1', '--port', String(t.port)];
    const newDir = join(t.root, 'alice', 'Maildir', 'new');
    try {
      assert.equal((await swaks([...server, '--to', 'alice@example.com'])).code, 0);
      const why = immutable(newDir);
      if (why !== null && !process.env.CI) return c.skip(why);
      const r = await swaks([...server, '--to', 'alice@example.com,bob@example.com']);
      const rs = replies(r.out);
      const after = rs.slice(rs.findIndex((l) => l.startsWith('354')) + 1);
      assert.match(after[0], /^451 4\.3\.0 <alice@example\.com>/, r.out);
      assert.match(after[1], /^250 2\.6\.0 <bob@example\.com>/, r.out);
    } finally {
      mutable(newDir);
      await t.close();
    }
  });

  test('[quota] tempfail: over quota is 452 4.2.2', async () => {
    const t = await startTestLmtp({
      users: { full: ['quota_messages=1'] },
      toml: '[lmtp]\nport = 0\n[quota]\ntempfail = true\n',
    });
    try {
      const server = ['--server', '127.0.0.1', '--port', String(t.port)];
      assert.equal((await swaks([...server, '--to', 'full@example.com'])).code, 0);
      const r = await swaks([...server, '--to', 'full@example.com']);
      assert.ok(
        replies(r.out).some((l) => /^452 4\.2\.2 <full@example\.com>/.test(l)),
        r.out,
      );
    } finally {
      await t.close();
    }
  });

  test('a message over max_message_size is refused with 552 5.3.4 and not stored', async () => {
    const t = await startTestLmtp({ users: { alice: [] }, toml: '[lmtp]\nport = 0\nmax_message_size = 2000\n' });
    try {
      const r = await swaks([
        '--server',
        '127.0.0.1',
        '--port',
        String(t.port),
        '--to',
        'alice@example.com',
        '--body',
        'z'.repeat(5000),
      ]);
      assert.ok(
        replies(r.out).some((l) => l.startsWith('552 5.3.4')),
        r.out,
      );
      assert.equal(t.messages('alice').length, 0);
    } finally {
      await t.close();
    }
  });
});

describe('LMTP on a Unix socket', { skip: skipUnlessCi(!hasSwaks && 'swaks is not installed') }, () => {
  test('listens on the socket with the configured mode, replaces a stale one, removes it on close', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-sock-'));
    const sock = join(dir, 'lmtp.sock');
    try {
      // A stale socket file: its listener was killed and could not remove it.
      const child = spawn(process.execPath, ['-e', 'require("net").createServer().listen(process.argv[1])', sock]);
      const deadline = Date.now() + 10_000;
      while (!existsSync(sock)) {
        if (Date.now() > deadline) throw new Error('helper did not create the socket');
        await new Promise((r) => setTimeout(r, 20));
      }
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
      assert.ok(statSync(sock).isSocket());

      const t = await startTestLmtp({
        users: { alice: [] },
        toml: `[lmtp]\nsocket = "${sock}"\nsocket_mode = "0600"\n`,
      });
      try {
        assert.equal(statSync(sock).mode & 0o777, 0o600);
        const r = await swaks(['--socket', sock, '--to', 'alice@example.com']);
        assert.equal(r.code, 0, r.out);
        assert.equal(t.messages('alice').length, 1);
      } finally {
        await t.close();
      }
      assert.throws(() => statSync(sock), /ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
