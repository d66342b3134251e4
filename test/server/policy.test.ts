/** RFC 2449 LOGIN-DELAY and EXPIRE: advertised, enforced, per user, kept in the store's session state. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryStore } from '../../src/storage/memory/store.ts';
import { startTestServer } from '../helpers/server.ts';
import { Wire } from '../helpers/wire.ts';

async function session(port: number, user: string, pass = 'pw'): Promise<{ w: Wire; reply: string }> {
  const w = await Wire.connect(port);
  await w.line();
  await w.cmd(`USER ${user}`);
  return { w, reply: await w.cmd(`PASS ${pass}`) };
}

async function capa(w: Wire): Promise<string[]> {
  assert.match(await w.cmd('CAPA'), /^\+OK/);
  return w.lines();
}

describe('LOGIN-DELAY', () => {
  test('advertised, enforced with [LOGIN-DELAY], overridable per user', async () => {
    const t = await startTestServer({
      users: { alice: { password: 'pw' }, bob: { password: 'pw', settings: { loginDelaySeconds: 0 } } },
      server: { policy: { loginDelaySeconds: 900, expireDays: 'never' } },
    });
    try {
      const w0 = await Wire.connect(t.port);
      await w0.line();
      assert.ok((await capa(w0)).includes('LOGIN-DELAY 900 USER'));
      w0.destroy();
      const a = await session(t.port, 'alice');
      assert.match(a.reply, /^\+OK/);
      assert.ok((await capa(a.w)).includes('LOGIN-DELAY 900'));
      await a.w.cmd('QUIT');
      const again = await session(t.port, 'alice');
      assert.equal(again.reply, '-ERR [LOGIN-DELAY] Logins are allowed every 900 seconds; try again later.');
      // Refused, but still in AUTHORIZATION, and the lock was released.
      assert.ok(!t.store.isLocked('alice'));
      again.w.destroy();
      // The stamp lives in the store, so it holds for any process that shares it.
      assert.ok((t.store.states.get('alice')?.lastLogin ?? 0) > Date.now() - 60_000);
      for (let i = 0; i < 2; i++) {
        const b = await session(t.port, 'bob');
        assert.match(b.reply, /^\+OK/);
        assert.ok(!(await capa(b.w)).some((c) => c.startsWith('LOGIN-DELAY')));
        await b.w.cmd('QUIT');
        await b.w.closed();
      }
    } finally {
      await t.close();
    }
  });
});

describe('EXPIRE', () => {
  test('EXPIRE NEVER by default: nothing is removed at QUIT but what was deleted', async () => {
    const store = new MemoryStore();
    store.add('alice', 'Subject: 1\r\n\r\n1\r\n');
    const t = await startTestServer({ store, users: { alice: { password: 'pw' } } });
    try {
      const { w } = await session(t.port, 'alice');
      assert.ok((await capa(w)).includes('EXPIRE NEVER'));
      await w.cmd('RETR 1');
      await w.body();
      await w.cmd('QUIT');
      assert.equal(store.list('alice').length, 1);
    } finally {
      await t.close();
    }
  });

  test('EXPIRE 0: retrieved messages are deleted at the QUIT of that session, others stay', async () => {
    const store = new MemoryStore();
    store.add('alice', 'Subject: 1\r\n\r\n1\r\n');
    store.add('alice', 'Subject: 2\r\n\r\n2\r\n');
    const t = await startTestServer({
      store,
      users: { alice: { password: 'pw' } },
      server: { policy: { loginDelaySeconds: 0, expireDays: 0 } },
    });
    try {
      const { w } = await session(t.port, 'alice');
      assert.ok((await capa(w)).includes('EXPIRE 0'));
      await w.cmd('RETR 2');
      await w.body();
      await w.cmd('TOP 1 0'); // TOP is not a retrieval
      await w.body();
      assert.equal(await w.cmd('QUIT'), '+OK Logging out, 1 deleted, 1 left.');
      assert.deepEqual(
        store.list('alice').map((m) => m.content.toString()),
        ['Subject: 1\r\n\r\n1\r\n'],
      );
    } finally {
      await t.close();
    }
  });

  test('EXPIRE n counts from the first retrieval; a dropped session expires nothing', async () => {
    const store = new MemoryStore();
    const m1 = store.add('alice', 'Subject: 1\r\n\r\n1\r\n');
    const m2 = store.add('alice', 'Subject: 2\r\n\r\n2\r\n');
    store.add('alice', 'Subject: 3\r\n\r\n3\r\n');
    const t = await startTestServer({
      store,
      users: { alice: { password: 'pw', settings: { expireDays: 5 } } },
      server: { policy: { loginDelaySeconds: 0, expireDays: 'never' } },
    });
    try {
      const w0 = await Wire.connect(t.port);
      await w0.line();
      assert.ok((await capa(w0)).includes('EXPIRE NEVER USER'));
      w0.destroy();
      const { w } = await session(t.port, 'alice');
      assert.ok((await capa(w)).includes('EXPIRE 5'));
      await w.cmd('RETR 1');
      await w.body();
      assert.equal(await w.cmd('QUIT'), '+OK Logging out, 0 deleted, 3 left.');
      const first = store.states.get('alice')?.retrieved?.[m1.id];
      assert.ok(first !== undefined && first > Date.now() - 60_000);
      // Pretend message 1 was first retrieved 6 days ago and message 2 four days ago.
      const day = 86_400_000;
      store.states.set('alice', { retrieved: { [m1.id]: Date.now() - 6 * day, [m2.id]: Date.now() - 4 * day } });
      const dropped = await session(t.port, 'alice');
      dropped.w.destroy();
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(store.list('alice').length, 3, 'a session that did not QUIT expires nothing');
      const s2 = await session(t.port, 'alice');
      assert.match(s2.reply, /^\+OK/);
      assert.equal(await s2.w.cmd('QUIT'), '+OK Logging out, 1 deleted, 2 left.');
      assert.deepEqual(
        store.list('alice').map((m) => m.id),
        [m2.id, store.list('alice')[1].id],
      );
      assert.deepEqual(Object.keys(store.states.get('alice')?.retrieved ?? {}), [m2.id]);
    } finally {
      await t.close();
    }
  });
});
