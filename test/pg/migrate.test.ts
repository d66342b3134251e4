/**
 * `postern store migrate`: Maildir → PostgreSQL → Maildir keeps every byte, every UIDL and the session
 * state; a second run copies nothing; a run after a partial copy copies only what is missing.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { main } from '../../src/cli/main.ts';
import { MaildirStore } from '../../src/storage/maildir/store.ts';
import { migrate } from '../../src/storage/postgres/schema.ts';
import { PostgresStore } from '../../src/storage/postgres/store.ts';
import type { MailStore } from '../../src/storage/types.ts';
import { deliverBytes, readAll } from '../storage/conformance.ts';
import { pgSkipReason, startTestPg, type TestPg } from './cluster.ts';

const skip = pgSkipReason();

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => {
    out += d;
  });
  stderr.on('data', (d) => {
    err += d;
  });
  const code = await main(args, { stdin: new PassThrough(), stdout, stderr });
  return { code, out, err };
}

/** uidl → sha256 of the stored bytes, in order, and the state with ids replaced by UIDLs. */
async function contents(store: MailStore, box: string) {
  const d = await store.openMaildrop(box, { lock: false });
  try {
    const list: [string, string][] = [];
    for (const m of d.messages) {
      list.push([
        m.uidl,
        createHash('sha256')
          .update(await readAll(await d.open(m.id)))
          .digest('hex'),
      ]);
    }
    const state = await d.readState();
    const uidlOf = new Map(d.messages.map((m) => [m.id, m.uidl]));
    const retrieved = Object.fromEntries(
      Object.entries(state.retrieved ?? {}).map(([id, t]) => [uidlOf.get(id) ?? `?${id}`, t]),
    );
    return { list: list.sort(), lastLogin: state.lastLogin, retrieved };
  } finally {
    await d.release();
  }
}

if (skip) {
  test('store migrate', { skip }, () => {});
} else {
  describe('postern store migrate', () => {
    let db: TestPg;
    let dir: string;
    before(async () => {
      db = await startTestPg();
      const pool = new pg.Pool({ connectionString: db.url });
      await migrate(pool);
      await pool.end();
      dir = mkdtempSync(join(tmpdir(), 'postern-migrate-'));
    });
    after(async () => {
      await db?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('Maildir → PostgreSQL → Maildir keeps every byte, UIDL and state; re-runs resume', async () => {
      const root1 = join(dir, 'one');
      const root2 = join(dir, 'two');
      const src = new MaildirStore({ root: root1, layout: '%u/Maildir' });
      const samples = [
        'Subject: crlf\r\n\r\nbody\r\n',
        'Subject: lf\n\nline\n.dot\n',
        'Subject: no end\r\n\r\nend',
        '',
        `Subject: big\n\n${'y'.repeat(99)}\n`.repeat(30_000),
      ];
      for (const s of samples) await deliverBytes(src, 'alice', s);
      for (let i = 0; i < 3; i++) await deliverBytes(src, 'bob@example.com', `Subject: b${i}\r\n\r\n${i}\r\n`);
      const d = await src.openMaildrop('alice');
      await d.writeState({ lastLogin: 1_700_000_000_000, retrieved: { [d.messages[1].id]: 1_700_000_001_000 } });
      await d.release();
      const before1 = { alice: await contents(src, 'alice'), bob: await contents(src, 'bob@example.com') };

      const first = await run(['store', 'migrate', '--from', `maildir:${root1}`, '--to', `postgres:${db.url}`]);
      assert.equal(first.code, 0, first.err);
      assert.match(first.out, /2 mailboxes, 8 messages copied, 0 already there, 0 failed/);
      const pgStore = new PostgresStore({ url: db.url });
      try {
        assert.deepEqual(await contents(pgStore, 'alice'), before1.alice);
        assert.deepEqual(await contents(pgStore, 'bob@example.com'), before1.bob);

        const again = await run(['store', 'migrate', '--from', `maildir:${root1}`, '--to', `postgres:${db.url}`]);
        assert.equal(again.code, 0, again.err);
        assert.match(again.out, /0 messages copied, 8 already there/);

        // An interrupted copy: two messages missing in the target; the next run copies just those.
        const p = await pgStore.openMaildrop('alice');
        await p.commit([p.messages[0].id, p.messages[4].id]);
        await p.release();
        const resumed = await run(['store', 'migrate', '--from', `maildir:${root1}`, '--to', `postgres:${db.url}`]);
        assert.equal(resumed.code, 0, resumed.err);
        assert.match(resumed.out, /2 messages copied, 6 already there/);
        assert.deepEqual(await contents(pgStore, 'alice'), before1.alice);

        const back = await run(['store', 'migrate', '--from', `postgres:${db.url}`, '--to', `maildir:${root2}`]);
        assert.equal(back.code, 0, back.err);
        assert.match(back.out, /2 mailboxes, 8 messages copied/);
        const dst = new MaildirStore({ root: root2, layout: '%u/Maildir' });
        assert.deepEqual(await contents(dst, 'alice'), before1.alice);
        assert.deepEqual(await contents(dst, 'bob@example.com'), before1.bob);
        await dst.close();
      } finally {
        await pgStore.close();
        await src.close();
      }
    });

    test('bad endpoints are usage errors that change nothing', async () => {
      const r = await run(['store', 'migrate', '--from', 'maildir:/nonexistent', '--to', 'ftp://x']);
      assert.equal(r.code, 64);
      assert.match(r.err, /not maildir:ROOT or postgres:/);
      assert.equal((await run(['store', 'migrate', '--from', 'x'])).code, 64);
    });
  });
}
