/** durable/: atomic writes and lock files, the one copy every writer uses. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fsyncDir, syncDirSync, writeFileAtomic, writeFileAtomicSync } from '../../src/durable/files.ts';
import { LockBusyError, LockFile } from '../../src/durable/lockfile.ts';

const root = mkdtempSync(join(tmpdir(), 'postern-durable-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A pid that surely names no process now: a child that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

describe('atomic writes', () => {
  test('replace the file whole, with the mode asked for, leaving no temporary behind', async () => {
    const dir = mkdtempSync(join(root, 'w-'));
    const f = join(dir, 'state.json');
    await writeFileAtomic(f, 'one');
    await writeFileAtomic(f, 'two', { mode: 0o640 });
    assert.equal(readFileSync(f, 'utf8'), 'two');
    assert.equal(statSync(f).mode & 0o777, 0o640);
    writeFileAtomicSync(f, 'three');
    assert.equal(readFileSync(f, 'utf8'), 'three');
    assert.equal(statSync(f).mode & 0o777, 0o600);
    await writeFileAtomic(f, 'four', { durable: false });
    assert.deepEqual(readdirSync(dir), ['state.json']);
    await fsyncDir(dir);
    syncDirSync(dir);
  });

  test('a failed write leaves the old file and no temporary', async () => {
    const dir = mkdtempSync(join(root, 'f-'));
    await assert.rejects(writeFileAtomic(join(dir, 'missing-dir', 'x'), 'data'), { code: 'ENOENT' });
    const f = join(dir, 'keep');
    writeFileSync(f, 'old');
    await assert.rejects(writeFileAtomic(f, 'new', { owner: { uid: -2, gid: -2 } }));
    assert.equal(readFileSync(f, 'utf8'), 'old');
    assert.deepEqual(readdirSync(dir), ['keep']);
  });
});

describe('lock files', () => {
  test('held: a second taker waits, then fails with the holder; released: free again', async () => {
    const p = join(mkdtempSync(join(root, 'l-')), 'users.lock');
    const a = await LockFile.acquire(p);
    assert.match(readFileSync(p, 'utf8'), new RegExp(`^${process.pid} ${hostname()} [0-9a-f]{16}\\n$`));
    const started = Date.now();
    const err = await LockFile.acquire(p, { waitMs: 150 }).catch((e: unknown) => e);
    assert.ok(err instanceof LockBusyError);
    assert.equal(err.holder?.pid, process.pid);
    assert.ok(Date.now() - started >= 140, 'waited');
    assert.throws(() => LockFile.acquireSync(p), LockBusyError);
    await a.release();
    await a.release(); // idempotent
    const b = LockFile.acquireSync(p);
    b.releaseSync();
    assert.deepEqual(readdirSync(join(p, '..')), []);
  });

  test('a lock of a dead process on this host is taken over at once; of another host, only by age', async () => {
    const dir = mkdtempSync(join(root, 's-'));
    const p = join(dir, 'state.lock');
    writeFileSync(p, `${deadPid()} ${hostname()} abc\n`);
    (await LockFile.acquire(p)).release();
    writeFileSync(p, `${deadPid()}\n`); // the older pid-only form counts as this host
    LockFile.acquireSync(p).releaseSync();
    writeFileSync(p, `${deadPid()} elsewhere.example abc\n`);
    await assert.rejects(LockFile.acquire(p), LockBusyError);
    const old = new Date(Date.now() - 120_000);
    utimesSync(p, old, old);
    await assert.rejects(LockFile.acquire(p, { staleMs: 300_000 }), LockBusyError);
    const lock = await LockFile.acquire(p, { staleMs: 60_000 });
    await lock.release();
    assert.deepEqual(readdirSync(dir), []);
  });

  test("checkPid: false judges other programs' dot-locks by age alone", async () => {
    const p = join(mkdtempSync(join(root, 'm-')), 'mbox.lock');
    writeFileSync(p, `${deadPid()}\n`);
    await assert.rejects(LockFile.acquire(p, { checkPid: false, staleMs: 60_000 }), LockBusyError);
    const old = new Date(Date.now() - 120_000);
    utimesSync(p, old, old);
    (await LockFile.acquire(p, { checkPid: false, staleMs: 60_000 })).release();
  });

  test('an empty lock (its creator between open and write) is live until it is old', async () => {
    const p = join(mkdtempSync(join(root, 'e-')), 'x.lock');
    writeFileSync(p, '');
    await assert.rejects(LockFile.acquire(p, { staleMs: 60_000 }), LockBusyError);
  });

  test('an empty lock left by a killed writer does not block for good, even with no staleMs', async () => {
    const p = join(mkdtempSync(join(root, 'k-')), 'state.json.lock');
    writeFileSync(p, '');
    assert.throws(() => LockFile.acquireSync(p), LockBusyError, 'young: its writer may be writing');
    const old = new Date(Date.now() - 11_000);
    utimesSync(p, old, old);
    LockFile.acquireSync(p).releaseSync();
    writeFileSync(p, '');
    utimesSync(p, old, old);
    (await LockFile.acquire(p)).release();
  });

  test('a lock is linked into place with its content: never visible empty, no pending file left', async () => {
    const dir = mkdtempSync(join(root, 'l-'));
    const p = join(dir, 'x.lock');
    const lock = await LockFile.acquire(p);
    assert.match(readFileSync(p, 'utf8'), new RegExp(`^${process.pid} `));
    assert.deepEqual(readdirSync(dir), ['x.lock']);
    await lock.release();
    const sync = LockFile.acquireSync(p);
    assert.deepEqual(readdirSync(dir), ['x.lock']);
    sync.releaseSync();
    assert.deepEqual(readdirSync(dir), []);
  });

  test('a leftover naming our own pid (an earlier process with the same pid) is taken over', async () => {
    const p = join(mkdtempSync(join(root, 'o-')), 'x.lock');
    writeFileSync(p, `${process.pid} ${hostname()} 0000000000000000\n`);
    await assert.rejects(LockFile.acquire(p), LockBusyError, 'by default our own pid counts as live');
    const mine = await LockFile.acquire(p, { ownPidLeftovers: true });
    assert.throws(() => LockFile.acquireSync(p, { ownPidLeftovers: true }), LockBusyError, 'ours and live');
    await mine.release();
  });

  test('release never removes a lock that was taken over meanwhile', async () => {
    const p = join(mkdtempSync(join(root, 'r-')), 'x.lock');
    const a = await LockFile.acquire(p);
    writeFileSync(p, 'someone else\n');
    await a.release();
    assert.equal(readFileSync(p, 'utf8'), 'someone else\n');
  });
});
