/** The small pieces of the delivery pipeline, fed at every split point where it matters. */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { extraFieldPairs, parseQuotaSize, parseUserSettings } from '../../src/auth/user-settings.ts';
import { DeliveryAgent } from '../../src/delivery/agent.ts';
import { FixedQuota, quotaRefusal, userQuota } from '../../src/delivery/quota.ts';
import { candidateUsers } from '../../src/delivery/recipients.ts';
import { decodeFieldValue, headerField, readHeaderSection } from '../../src/mail/headerFields.ts';
import { TraceHeaders } from '../../src/mail/headers.ts';
import { splitMbox } from '../../src/mail/mbox.ts';
import { MemoryStore } from '../../src/storage/memory/store.ts';

async function collect(stream: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of stream) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

/** Feeds `input` split at `at` through a fresh TraceHeaders. */
async function trace(input: string, at: number, opts: ConstructorParameters<typeof TraceHeaders>[0]): Promise<string> {
  const parts = [input.slice(0, at), input.slice(at)].filter((p) => p !== '').map((p) => Buffer.from(p, 'latin1'));
  return (await collect(Readable.from(parts).pipe(new TraceHeaders(opts)))).toString('latin1');
}

describe('TraceHeaders', () => {
  test('uses the message line ending, at every split point', async () => {
    for (const [msg, eol] of [
      ['Subject: a\r\n\r\nb\r\n', '\r\n'],
      ['Subject: a\n\nb\n', '\n'],
    ] as const) {
      for (let at = 0; at <= msg.length; at++) {
        const got = await trace(msg, at, { returnPath: 's@x', deliveredTo: 'r@y' });
        assert.equal(got, `Return-Path: <s@x>${eol}Delivered-To: r@y${eol}${msg}`, `split at ${at}`);
      }
    }
  });

  test('drops a leading From_ line when asked, only that', async () => {
    const msg = 'From a@b Thu Jan  1 00:00:00 1970\nFrom: a@b\n\nx\n';
    for (let at = 0; at <= msg.length; at++) {
      assert.equal(await trace(msg, at, { stripFromLine: true }), 'From: a@b\n\nx\n', `split at ${at}`);
    }
    assert.equal(await trace('From: a@b\n\nx\n', 3, { stripFromLine: true }), 'From: a@b\n\nx\n');
  });

  test('a hostile address cannot start a header of its own; the null sender is <>', async () => {
    assert.equal(
      await trace('x\r\n', 0, { returnPath: 'a@b>\r\nX-Evil: 1', deliveredTo: 'r\n@y' }),
      'Return-Path: <a@bX-Evil: 1>\r\nDelivered-To: r@y\r\nx\r\n',
    );
    assert.equal(await trace('x\r\n', 0, { returnPath: '' }), 'Return-Path: <>\r\nx\r\n');
    assert.equal(await trace('', 0, { deliveredTo: 'r@y' }), 'Delivered-To: r@y\r\n');
  });
});

describe('quota', () => {
  test('sizes and extra fields', () => {
    assert.equal(parseQuotaSize('1048576'), 1048576);
    assert.equal(parseQuotaSize('512K'), 512 * 1024);
    assert.equal(parseQuotaSize('100m'), 100 * 2 ** 20);
    assert.equal(parseQuotaSize('2GB'), 2 * 2 ** 30);
    assert.equal(parseQuotaSize('1.5G'), null);
    assert.equal(parseQuotaSize('-1'), null);
    const d = { bytes: 100, messages: 5 };
    const parse = (extra: string[]) => parseUserSettings(extraFieldPairs(extra));
    assert.deepEqual(parse(['mailbox=x', 'quota_bytes=1K']), { settings: { quota: { bytes: 1024 } }, problems: [] });
    assert.deepEqual(userQuota(parse(['mailbox=x', 'quota_bytes=1K']).settings, d), { bytes: 1024, messages: 5 });
    assert.deepEqual(userQuota(parse(['quota_messages=0']).settings, d), { bytes: 100, messages: 0 });
    const bad = parse(['quota_bytes=lots']);
    assert.deepEqual(bad.problems, [
      {
        field: 'quota_bytes',
        message: 'quota_bytes=lots is not a size like 1048576, 500M or 2G; ignored, the default applies',
      },
    ]);
    assert.equal(bad.settings, undefined);
    assert.deepEqual(userQuota(bad.settings, d), d);
  });

  test('refusals', () => {
    const q = { bytes: 1000, messages: 3 };
    assert.equal(quotaRefusal({ messages: 2, bytes: 500 }, q), null);
    assert.match(quotaRefusal({ messages: 3, bytes: 500 }, q) ?? '', /3 of 3 messages/);
    assert.match(quotaRefusal({ messages: 0, bytes: 1000 }, q) ?? '', /mailbox is full/);
    assert.match(quotaRefusal({ messages: 0, bytes: 900 }, q, 200) ?? '', /does not fit/);
    assert.equal(quotaRefusal({ messages: 99, bytes: 1e9 }, { bytes: 0, messages: 0 }), null);
  });
});

describe('recipients', () => {
  test('candidate user names', () => {
    const both = { lookup: 'address-then-localpart', delimiter: '+' } as const;
    assert.deepEqual(candidateUsers('Alice+x@Example.COM', both), [
      'Alice+x@example.com',
      'Alice@example.com',
      'alice+x@example.com',
      'alice@example.com',
      'Alice+x',
      'Alice',
      'alice+x',
      'alice',
    ]);
    assert.deepEqual(candidateUsers('bob@x', { lookup: 'address', delimiter: '' }), ['bob@x']);
    assert.deepEqual(candidateUsers('bob@x', { lookup: 'localpart', delimiter: '' }), ['bob']);
    assert.deepEqual(candidateUsers('bob', { lookup: 'address', delimiter: '' }), ['bob']);
    assert.deepEqual(candidateUsers('+x@y', { lookup: 'localpart', delimiter: '+' }), ['+x']);
  });
});

describe('DeliveryAgent', () => {
  const users = {
    async lookup(u: string) {
      return ['a', 'b', 'c'].includes(u) ? { user: u, mailboxId: u } : null;
    },
  };

  test('fans one stream out to every recipient, each with its own Delivered-To', async () => {
    const store = new MemoryStore();
    const agent = new DeliveryAgent({ store, users });
    const rs = await Promise.all(['a@x', 'b@x'].map((a) => agent.resolve(a)));
    const chunks = Array.from({ length: 200 }, (_, i) => Buffer.from(`line ${i}\r\n`));
    const out = await agent.deliver(Readable.from(chunks), {
      sender: 's@x',
      recipients: rs.map((r) => r ?? assert.fail()),
    });
    assert.deepEqual(
      out.map((o) => o.status),
      ['delivered', 'delivered'],
    );
    // Stored with LF line endings, as every delivery path stores mail.
    const body = Buffer.concat(chunks).toString().replaceAll('\r\n', '\n');
    assert.equal(store.list('a')[0].content.toString(), `Return-Path: <s@x>\nDelivered-To: a@x\n${body}`);
    assert.equal(store.list('b')[0].content.toString(), `Return-Path: <s@x>\nDelivered-To: b@x\n${body}`);
  });

  test('a recipient over quota drops out while the others get the message', async () => {
    const store = new MemoryStore();
    const agent = new DeliveryAgent({
      store,
      users,
      quotas: {
        async quotaOf(u) {
          return u === 'b' ? { bytes: 50, messages: 0 } : { bytes: 0, messages: 0 };
        },
      },
    });
    const rs = (await Promise.all(['a', 'b', 'c'].map((a) => agent.resolve(a)))).map((r) => r ?? assert.fail());
    const out = await agent.deliver(Readable.from([Buffer.alloc(10_000, 0x41), Buffer.from('\r\n')]), {
      recipients: rs,
    });
    assert.deepEqual(
      out.map((o) => o.status),
      ['delivered', 'quota', 'delivered'],
    );
    assert.equal(store.list('b').length, 0);
    assert.equal(store.list('c')[0].content.length, 10_000 + 1 + 'Delivered-To: c\n'.length);
  });

  test('a source that fails mid-message stores nothing and reports temp', async () => {
    const store = new MemoryStore();
    const agent = new DeliveryAgent({ store, users, quotas: new FixedQuota({ bytes: 0, messages: 0 }) });
    const r = (await agent.resolve('a')) ?? assert.fail();
    async function* broken() {
      yield Buffer.from('Subject: x\r\n\r\n');
      throw new Error('connection lost');
    }
    const [o] = await agent.deliver(broken(), { recipients: [r] });
    assert.equal(o.status, 'temp');
    assert.equal(store.list('a').length, 0);
  });

  test('hooks count outcomes', async () => {
    const seen: string[] = [];
    const store = new MemoryStore();
    const agent = new DeliveryAgent({ store, users, hooks: { onDelivery: (s) => seen.push(s) } });
    const r = (await agent.resolve('a')) ?? assert.fail();
    await agent.deliver(Readable.from([Buffer.from('x\r\n')]), { recipients: [r] });
    agent.noUser('zz');
    const limited = new DeliveryAgent({
      store,
      users,
      quotas: new FixedQuota({ bytes: 0, messages: 1 }),
      hooks: { onDelivery: (s) => seen.push(s) },
    });
    const full = (await limited.resolve('a')) ?? assert.fail();
    assert.equal((await limited.precheck(full))?.status, 'quota');
    assert.deepEqual(seen, ['delivered', 'nouser', 'quota']);
  });
});

describe('mbox', () => {
  async function split(text: string, format: 'mboxrd' | 'mboxo', chunk = 7): Promise<string[]> {
    const parts: Buffer[] = [];
    for (let i = 0; i < text.length; i += chunk) parts.push(Buffer.from(text.slice(i, i + chunk), 'latin1'));
    const out: string[] = [];
    await splitMbox(Readable.from(parts), format, async (m) => {
      out.push((await collect(m.stream)).toString('latin1'));
    });
    return out;
  }

  const mbox = [
    'From a@b Thu Jan  1 00:00:00 2026',
    'Subject: one',
    '',
    'hello',
    '>From the start',
    '>>From deeper',
    '',
    '',
    'From c@d Thu Jan  1 00:00:01 2026',
    'Subject: two',
    '',
    'bye',
    '',
  ].join('\n');

  test('mboxrd: separators, unquoting at every depth, the padding line removed; any chunking', async () => {
    for (const chunk of [1, 2, 7, 1000]) {
      assert.deepEqual(await split(mbox, 'mboxrd', chunk), [
        'Subject: one\n\nhello\nFrom the start\n>From deeper\n\n',
        'Subject: two\n\nbye\n',
      ]);
    }
  });

  test('mboxo: only one level is unquoted', async () => {
    assert.deepEqual((await split(mbox, 'mboxo'))[0], 'Subject: one\n\nhello\nFrom the start\n>>From deeper\n\n');
  });

  test('not an mbox', async () => {
    await assert.rejects(split('Subject: x\n\nbody\n', 'mboxrd'), /not an mbox/);
  });
});

describe('header fields for mailbox list', () => {
  test('reads only the header, unfolds and decodes', async () => {
    const msg =
      'Date: Thu, 1 Jan 2026 00:00:00 +0000\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n =?ISO-8859-1?Q?_aus_K=F6ln?=\r\n\r\nSubject: body\r\n';
    const header = await readHeaderSection(Readable.from([Buffer.from(msg, 'latin1')]));
    assert.equal(headerField(header, 'date'), 'Thu, 1 Jan 2026 00:00:00 +0000');
    assert.equal(decodeFieldValue(headerField(header, 'SUBJECT') ?? ''), 'Grüße aus Köln');
    assert.equal(decodeFieldValue(Buffer.from('Grüße', 'utf8').toString('latin1')), 'Grüße');
    assert.equal(headerField(header, 'from'), undefined);
  });
});
