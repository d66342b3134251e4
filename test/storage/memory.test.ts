import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryStore } from '../../src/storage/memory/store.ts';
import { readAll, rejectsWith, runConformance } from './conformance.ts';

runConformance('memory', async () => ({ store: new MemoryStore(), cleanup: async () => {} }));
runConformance('memory (small chunks)', async () => ({
  store: new MemoryStore({ chunkSize: 1000 }),
  cleanup: async () => {},
}));

describe('memory store: seeding, inspection and fault knobs', () => {
  test('add seeds messages, list shows them, clear empties', async () => {
    const store = new MemoryStore();
    const m = store.add('alice', 'Subject: x\n\nx\n', { uidl: 'fixed-1' });
    assert.equal(m.size, 17);
    assert.equal(m.uidl, 'fixed-1');
    assert.deepEqual(
      store.list('alice').map((s) => s.content.toString()),
      ['Subject: x\n\nx\n'],
    );
    store.clear('alice');
    assert.deepEqual(store.list('alice'), []);
  });

  test('holdLock makes logins fail with inuse until dropped; isLocked follows sessions', async () => {
    const store = new MemoryStore();
    const drop = store.holdLock('alice');
    await rejectsWith(store.openMaildrop('alice'), 'inuse');
    drop();
    const d = await store.openMaildrop('alice');
    assert.equal(store.isLocked('alice'), true);
    await d.release();
    assert.equal(store.isLocked('alice'), false);
  });

  test('failOpenMaildrop, failOpen, failStats, failDeliver', async () => {
    const store = new MemoryStore();
    const m = store.add('alice', 'x\r\n');
    store.faults.failOpenMaildrop = 'temp';
    await rejectsWith(store.openMaildrop('alice'), 'temp');
    assert.equal(store.isLocked('alice'), false);
    store.faults = { failOpen: 'perm', failStats: 'temp', failDeliver: 'quota' };
    const d = await store.openMaildrop('alice');
    await rejectsWith(d.open(m.id), 'perm');
    await rejectsWith(store.stats('alice'), 'temp');
    const { Readable } = await import('node:stream');
    await rejectsWith(store.deliver('alice', Readable.from([Buffer.from('y\r\n')])), 'quota');
    assert.equal(store.list('alice').length, 1);
    await d.release();
  });

  test('failCommit deletes nothing; commitDelayMs delays the commit', async () => {
    const store = new MemoryStore();
    const m = store.add('alice', 'x\r\n');
    const d = await store.openMaildrop('alice');
    store.faults.failCommit = 'temp';
    await rejectsWith(d.commit([m.id]), 'temp');
    assert.equal(store.list('alice').length, 1);
    store.faults = { commitDelayMs: 30 };
    const started = Date.now();
    let done = false;
    const p = d.commit([m.id]).then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(done, false);
    assert.equal(store.list('alice').length, 1);
    await p;
    assert.ok(Date.now() - started >= 25);
    assert.equal(store.list('alice').length, 0);
    await d.release();
  });

  test('failReadAfterBytes breaks the stream after that many bytes; chunkSize splits it', async () => {
    const store = new MemoryStore({ chunkSize: 3 });
    const m = store.add('alice', '0123456789');
    const d = await store.openMaildrop('alice');
    const chunks: string[] = [];
    for await (const c of await d.open(m.id)) chunks.push(String(c));
    assert.deepEqual(chunks, ['012', '345', '678', '9']);
    store.faults.failReadAfterBytes = 5;
    await rejectsWith(readAll(await d.open(m.id)), 'temp');
    await d.release();
  });
});
