/**
 * The storage contract (src/storage/types.ts, design.md §4–5) as tests, run against every store. A store
 * passes when it behaves as these say; store-specific behaviour (files, locks across processes, caches) is
 * tested beside each store.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { transmittedSize } from '../../src/mail/size.ts';
import {
  type DeliveryResult,
  isStorageError,
  type Maildrop,
  type MailStore,
  type StorageErrorKind,
} from '../../src/storage/types.ts';

export interface StoreFixture {
  readonly store: MailStore;
  cleanup(): Promise<void>;
}

export async function deliverBytes(store: MailStore, mailboxId: string, bytes: Buffer | string) {
  return store.deliver(mailboxId, Readable.from([typeof bytes === 'string' ? Buffer.from(bytes) : bytes]));
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  return Buffer.concat(chunks);
}

export async function rejectsWith(p: Promise<unknown>, kind: StorageErrorKind): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isStorageError(e, kind), `expected StorageError(${kind}), got ${String(e)}`);
    return true;
  });
}

const VALID_UIDL = /^[\x21-\x7e]{1,70}$/;

const SAMPLES: readonly string[] = [
  'Subject: crlf\r\n\r\nbody\r\n',
  'Subject: lf\n\nline one\nline two\n',
  'Subject: no final newline\r\n\r\nend',
  'Subject: lone cr\r\n\r\na\rb\r\n.dot line\r\n',
  '',
];

export function runConformance(name: string, makeStore: () => Promise<StoreFixture>): void {
  describe(`${name}: storage conformance`, () => {
    const it = (title: string, fn: (store: MailStore) => Promise<void>) =>
      test(title, async () => {
        const fixture = await makeStore();
        try {
          await fn(fixture.store);
        } finally {
          await fixture.store.close();
          await fixture.cleanup();
        }
      });

    const session = async <T>(store: MailStore, box: string, fn: (d: Maildrop) => Promise<T>): Promise<T> => {
      const drop = await store.openMaildrop(box);
      try {
        return await fn(drop);
      } finally {
        await drop.release();
      }
    };

    it('a mailbox never written to opens empty', async (store) => {
      assert.deepEqual(await store.stats('alice'), { messages: 0, bytes: 0 });
      await session(store, 'alice', async (d) => {
        assert.equal(d.mailboxId, 'alice');
        assert.deepEqual(d.messages, []);
      });
    });

    it('deliver reports the transmitted size; the snapshot lists, in order, what was delivered', async (store) => {
      const results: DeliveryResult[] = [];
      for (const s of SAMPLES) results.push(await deliverBytes(store, 'alice', s));
      for (const [i, r] of results.entries()) assert.equal(r.size, transmittedSize(Buffer.from(SAMPLES[i])));
      const total = results.reduce((n, r) => n + r.size, 0);
      assert.deepEqual(await store.stats('alice'), { messages: SAMPLES.length, bytes: total });
      await session(store, 'alice', async (d) => {
        assert.deepEqual(
          d.messages.map((m) => [m.id, m.size]),
          results.map((r) => [r.id, r.size]),
        );
        for (const [i, m] of d.messages.entries()) {
          assert.deepEqual(await readAll(await d.open(m.id)), Buffer.from(SAMPLES[i]));
        }
      });
    });

    it('readSmall returns the stored bytes, or null when the message is larger than asked', async (store) => {
      for (const text of SAMPLES) await deliverBytes(store, 'alice', text);
      await session(store, 'alice', async (d) => {
        if (!d.readSmall) return; // optional
        for (const [i, m] of d.messages.entries()) {
          const raw = Buffer.from(SAMPLES[i]);
          assert.deepEqual(await d.readSmall(m.id, m.size), raw);
          if (raw.length > 0) assert.equal(await d.readSmall(m.id, raw.length - 1), null);
        }
      });
    });

    it('session state is empty at first, kept across sessions, and per mailbox', async (store) => {
      await session(store, 'alice', async (d) => assert.deepEqual(await d.readState(), {}));
      const state = { lastLogin: 1_700_000_000_000, retrieved: { a: 1, 'b,c': 2 } };
      await session(store, 'alice', async (d) => d.writeState(state));
      await session(store, 'alice', async (d) => assert.deepEqual(await d.readState(), state));
      await session(store, 'bob', async (d) => assert.deepEqual(await d.readState(), {}));
      await session(store, 'alice', async (d) => d.writeState({ lastLogin: 5 }));
      await session(store, 'alice', async (d) => assert.deepEqual(await d.readState(), { lastLogin: 5 }));
    });

    it('UIDLs are valid, unique, and the same in every session', async (store) => {
      for (let i = 0; i < 20; i++) await deliverBytes(store, 'alice', `Subject: ${i}\r\n\r\n${i}\r\n`);
      const first = await session(store, 'alice', async (d) => d.messages.map((m) => [m.id, m.uidl, m.size]));
      assert.equal(first.length, 20);
      for (const [, uidl] of first) assert.match(String(uidl), VALID_UIDL);
      assert.equal(new Set(first.map(([, u]) => u)).size, 20);
      const second = await session(store, 'alice', async (d) => d.messages.map((m) => [m.id, m.uidl, m.size]));
      assert.deepEqual(second, first);
    });

    it('a delivery arriving in small chunks and strings is stored and sized exactly', async (store) => {
      const text = 'A: b\r\nC: d\n\n\r\r\nline\rx\nlast';
      const chunks = [...text].map((c, i) => (i % 2 ? c : Buffer.from(c)));
      const r = await store.deliver('alice', Readable.from(chunks));
      assert.equal(r.size, transmittedSize(Buffer.from(text)));
      await session(store, 'alice', async (d) => {
        assert.equal(d.messages[0].size, r.size);
        assert.equal((await readAll(await d.open(r.id))).toString(), text);
      });
    });

    it('a large message streams in and out intact', async (store) => {
      const line = `${'x'.repeat(75)}\n`;
      const big = Buffer.from(line.repeat(40_000)); // 3 MB, LF endings
      const chunks: Buffer[] = [];
      for (let i = 0; i < big.length; i += 10_000) chunks.push(big.subarray(i, i + 10_000));
      const r = await store.deliver('alice', Readable.from(chunks));
      assert.equal(r.size, big.length + 40_000);
      await session(store, 'alice', async (d) => {
        const back = await readAll(await d.open(r.id));
        assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(big).digest('hex'));
      });
    });

    it('the lock is exclusive until released; release is idempotent; lock:false bypasses it', async (store) => {
      await deliverBytes(store, 'alice', 'Subject: x\r\n\r\nx\r\n');
      const a = await store.openMaildrop('alice');
      await rejectsWith(store.openMaildrop('alice'), 'inuse');
      const peek = await store.openMaildrop('alice', { lock: false });
      assert.equal(peek.messages.length, 1);
      await peek.release();
      await rejectsWith(store.openMaildrop('alice'), 'inuse');
      assert.deepEqual((await store.stats('alice')).messages, 1); // stats needs no lock
      await a.release();
      await a.release();
      const b = await store.openMaildrop('alice');
      await rejectsWith(store.openMaildrop('alice'), 'inuse');
      await b.release();
    });

    it('of two simultaneous logins exactly one gets the maildrop', async (store) => {
      const results = await Promise.allSettled([
        store.openMaildrop('alice'),
        store.openMaildrop('alice'),
        store.openMaildrop('alice'),
      ]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      assert.equal(won.length, 1);
      for (const r of lost) assert.ok(isStorageError(r.reason, 'inuse'));
      for (const r of won) await r.value.release();
    });

    it('mailboxes are independent, and so are their locks', async (store) => {
      await deliverBytes(store, 'alice', 'Subject: a\r\n\r\na\r\n');
      const a = await store.openMaildrop('alice');
      const b = await store.openMaildrop('bob');
      assert.equal(a.messages.length, 1);
      assert.equal(b.messages.length, 0);
      await a.release();
      await b.release();
    });

    it('commit removes exactly the given messages, durably for the next session', async (store) => {
      const ids: string[] = [];
      for (let i = 1; i <= 5; i++) ids.push((await deliverBytes(store, 'alice', `Subject: ${i}\r\n\r\n${i}\r\n`)).id);
      const before = await session(store, 'alice', async (d) => d.messages.map((m) => ({ ...m })));
      await session(store, 'alice', async (d) => {
        await d.commit([ids[1], ids[3]]);
      });
      await session(store, 'alice', async (d) => {
        assert.deepEqual(
          d.messages.map((m) => ({ ...m })),
          [before[0], before[2], before[4]],
        );
      });
      const stats = await store.stats('alice');
      assert.deepEqual(stats, { messages: 3, bytes: before[0].size + before[2].size + before[4].size });
    });

    it('commit with nothing to delete, or of messages already gone, succeeds', async (store) => {
      const m1 = await deliverBytes(store, 'alice', 'Subject: 1\r\n\r\n1\r\n');
      const m2 = await deliverBytes(store, 'alice', 'Subject: 2\r\n\r\n2\r\n');
      const m3 = await deliverBytes(store, 'alice', 'Subject: 3\r\n\r\n3\r\n');
      const d = await store.openMaildrop('alice');
      await d.commit([]);
      const other = await store.openMaildrop('alice', { lock: false });
      await other.commit([m1.id]);
      await other.release();
      await d.commit([m1.id, m2.id, m2.id]);
      await d.release();
      await session(store, 'alice', async (s) =>
        assert.deepEqual(
          s.messages.map((m) => m.id),
          [m3.id],
        ),
      );
    });

    it('open of a message removed meanwhile by someone else is notfound', async (store) => {
      const m1 = await deliverBytes(store, 'alice', 'Subject: 1\r\n\r\n1\r\n');
      const d = await store.openMaildrop('alice');
      const other = await store.openMaildrop('alice', { lock: false });
      await other.commit([m1.id]);
      await other.release();
      await rejectsWith(d.open(m1.id), 'notfound');
      await rejectsWith(d.open('no-such-id'), 'notfound');
      await d.release();
    });

    it('release without commit deletes nothing', async (store) => {
      await deliverBytes(store, 'alice', 'Subject: 1\r\n\r\n1\r\n');
      await deliverBytes(store, 'alice', 'Subject: 2\r\n\r\n2\r\n');
      const d = await store.openMaildrop('alice');
      await d.release();
      assert.equal((await store.stats('alice')).messages, 2);
    });

    it('mail delivered during a session is not in its snapshot, and commit cannot delete it', async (store) => {
      const m1 = await deliverBytes(store, 'alice', 'Subject: 1\r\n\r\n1\r\n');
      const d = await store.openMaildrop('alice');
      const late = await deliverBytes(store, 'alice', 'Subject: late\r\n\r\nlate\r\n');
      assert.deepEqual(
        d.messages.map((m) => m.id),
        [m1.id],
      );
      await rejectsWith(d.open(late.id), 'notfound');
      await d.commit([m1.id, late.id]);
      await d.release();
      await session(store, 'alice', async (s) => {
        assert.deepEqual(
          s.messages.map((m) => m.id),
          [late.id],
        );
        assert.equal((await readAll(await s.open(late.id))).toString(), 'Subject: late\r\n\r\nlate\r\n');
      });
    });

    it('a delivery whose stream fails stores nothing', async (store) => {
      await deliverBytes(store, 'alice', 'Subject: 1\r\n\r\n1\r\n');
      async function* failing() {
        yield Buffer.from('Subject: partial\r\n\r\n');
        yield Buffer.alloc(100_000, 0x61);
        throw new Error('connection lost');
      }
      await assert.rejects(store.deliver('alice', Readable.from(failing())), (e: unknown) => isStorageError(e));
      assert.equal((await store.stats('alice')).messages, 1);
      await session(store, 'alice', async (d) => assert.equal(d.messages.length, 1));
    });

    it('a released maildrop refuses open and commit', async (store) => {
      const m1 = await deliverBytes(store, 'alice', 'Subject: 1\r\n\r\n1\r\n');
      const d = await store.openMaildrop('alice');
      await d.release();
      await assert.rejects(d.commit([m1.id]), (e: unknown) => isStorageError(e));
      await assert.rejects(d.open(m1.id), (e: unknown) => isStorageError(e));
      assert.equal((await store.stats('alice')).messages, 1);
    });

    it('invalid mailbox ids are refused with perm', async (store) => {
      for (const bad of ['', '.', '..', '.hidden', 'a/b', '/etc', 'a\\b', 'a\0b', 'a\nb', 'x/../y', 'a..b']) {
        await rejectsWith(store.openMaildrop(bad), 'perm');
        await rejectsWith(deliverBytes(store, bad, 'x\r\n'), 'perm');
        await rejectsWith(store.stats(bad), 'perm');
      }
      await deliverBytes(store, 'user@example.com', 'x\r\n');
      assert.equal((await store.stats('user@example.com')).messages, 1);
    });
  });
}
