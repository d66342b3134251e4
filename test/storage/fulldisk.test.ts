/**
 * POP3 on a full disk (issue 13 #14): the maildrop lock needs no new disk space, so users can still log in,
 * read, and delete mail to make room; a delivery meanwhile is deferred, nothing is lost. The disk is a small
 * tmpfs filled to ENOSPC.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { MaildirStore } from '../../src/storage/maildir/store.ts';
import { isStorageError } from '../../src/storage/types.ts';
import { makeServer } from '../helpers/server.ts';
import { mountTmpfs, skipUnlessCi, type Tmpfs } from '../helpers/tmpfs.ts';
import { Wire } from '../helpers/wire.ts';

const fs = mountTmpfs(512);
const skip = skipUnlessCi(typeof fs === 'string' ? fs : null);

describe('a full disk', { skip }, () => {
  const disk = fs as Tmpfs;
  let store: MaildirStore;
  let server: Awaited<ReturnType<typeof makeServer>>;
  let port = 0;
  const md = join(disk.dir, 'mail', 'alice', 'Maildir');

  before(async () => {
    store = new MaildirStore({ root: join(disk.dir, 'mail') });
    for (const n of [1, 2]) {
      await store.deliver('alice', Readable.from([Buffer.from(`Subject: ${n}\r\n\r\nbody ${n}\r\n`)]));
    }
    // One message as Postfix writes it (no size in the name): listing it wants to write the size cache.
    mkdirSync(join(md, 'new'), { recursive: true });
    writeFileSync(join(md, 'new', '1700000000.P1Q1.postfix'), 'Subject: 3\n\nbody 3\n');
    server = await makeServer({ store });
    [{ port }] = await server.listen([{ address: '127.0.0.1', port: 0, tls: 'starttls' }]);
    assert.ok(disk.fill() > 0);
  });
  after(async () => {
    await server?.close();
    await store?.close();
    disk.unmount();
  });

  test('a delivery is refused for now (a temporary error), nothing half-written is left', async () => {
    const big = Readable.from([Buffer.alloc(64 * 1024, 0x61)]);
    await assert.rejects(store.deliver('alice', big), (e) => isStorageError(e) && e.kind !== 'perm');
    assert.deepEqual(readdirSync(join(md, 'tmp')), []);
  });

  test('login, RETR, DELE and QUIT work; the deletion frees space', async () => {
    const w = await Wire.connect(port);
    try {
      await w.line();
      assert.match(await w.cmd('USER alice'), /^\+OK/);
      assert.match(await w.cmd('PASS wonderland'), /^\+OK/, 'the lock needs no disk space');
      assert.match(await w.cmd('STAT'), /^\+OK 3 /);
      // The oldest is the Postfix one; its size could not be cached (no space) and was counted anyway.
      assert.match(await w.cmd('RETR 1'), /^\+OK/);
      assert.deepEqual(await w.lines(), ['Subject: 3', '', 'body 3']);
      assert.match(await w.cmd('DELE 1'), /^\+OK/);
      assert.match(await w.cmd('DELE 2'), /^\+OK/);
      assert.match(await w.cmd('QUIT'), /^\+OK/);
    } finally {
      w.destroy();
    }
    assert.equal(readdirSync(join(md, 'new')).length + readdirSync(join(md, 'cur')).length, 1);
    // A second session right after: the lock was given back (renamed, not written) on a disk still full.
    const again = await Wire.connect(port);
    try {
      await again.line();
      assert.match(await again.cmd('USER alice'), /^\+OK/);
      assert.match(await again.cmd('PASS wonderland'), /^\+OK .*\b1 messages/);
      assert.match(await again.cmd('QUIT'), /^\+OK/);
    } finally {
      again.destroy();
    }
  });
});
