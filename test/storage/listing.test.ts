/**
 * The persistent Maildir listing (src/storage/maildir/listing.ts): a warm open is served from postern-listing
 * while new/, cur/ and dovecot-uidlist are unchanged, and rebuilt when a delivery, a deletion or a rename by
 * another program changed them; sizes found wrong by RETR survive a rebuild. Directory times are set into the
 * past (utimes) where a test needs a listing that is not "racy" (changed in the last second).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rename, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { LISTING_FILE } from '../../src/storage/maildir/listing.ts';
import { MaildirStore } from '../../src/storage/maildir/store.ts';
import type { Maildrop } from '../../src/storage/types.ts';

let root = '';
let n = 0;
const stores: MaildirStore[] = [];
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'postern-listing-'));
});
after(async () => {
  for (const s of stores) await s.close();
  await rm(root, { recursive: true, force: true });
});

/** A store on a fresh root with alice's Maildir holding `files` (name in new/ or cur/ → content). */
async function setup(files: Record<string, string>) {
  const r = join(root, `t${++n}`);
  const md = join(r, 'alice', 'Maildir');
  for (const d of ['new', 'cur', 'tmp']) await mkdir(join(md, d), { recursive: true });
  for (const [path, content] of Object.entries(files)) await writeFile(join(md, path), content);
  await age(md);
  const store = new MaildirStore({ root: r });
  stores.push(store);
  const open = async (): Promise<Maildrop> => store.openMaildrop('alice');
  /** Opens, returns [uidl, size] pairs, releases. */
  const snapshot = async (): Promise<[string, number][]> => {
    const d = await open();
    try {
      return d.messages.map((m) => [m.uidl, m.size]);
    } finally {
      await d.release();
    }
  };
  return { md, store, open, snapshot };
}

/** Whole seconds, so that setting it again restores the very same nanosecond stamp. */
const PAST = Math.floor(Date.now() / 1000) - 10;

/** Sets new/ and cur/ into the past (always the same instant), as for a mailbox nobody touched lately. */
async function age(md: string): Promise<void> {
  for (const d of ['new', 'cur']) await utimes(join(md, d), PAST, PAST);
}

const listingHead = async (md: string) => (await readFile(join(md, LISTING_FILE), 'latin1')).split('\n')[1];

const A = '1700000000.M1P1Q1.h,S=2,W=3';
const B = '1700000001.M1P1Q1.h,S=2,W=3';

describe('persistent Maildir listing', () => {
  test('the first open writes it; a warm open is served from it without reading the directories', async () => {
    const { md, snapshot } = await setup({ [`new/${A}`]: 'a\n', [`cur/${B}:2,S`]: 'b\n' });
    const first = await snapshot();
    assert.deepEqual(first, [
      ['1700000000.M1P1Q1.h', 3],
      ['1700000001.M1P1Q1.h', 3],
    ]);
    assert.match(await listingHead(md), /^stamps 1 /);
    // A file slipped in while keeping new/'s time as it was: only a listing that trusted the stamps misses it,
    // which shows the warm open did not read the directory.
    await writeFile(join(md, 'new', '1700000002.M1P1Q1.h,S=2,W=3'), 'c\n');
    await age(md);
    assert.deepEqual(await snapshot(), first);
  });

  test('LIST and UIDL bodies and the totals come prebuilt, before any message object is built', async () => {
    const { open } = await setup({ [`new/${A}`]: 'a\n', [`cur/${B}:2,S`]: 'b\n' });
    await (await open()).release(); // writes the listing
    const d = await open();
    try {
      const pre = d.prebuilt;
      assert.ok(pre);
      assert.equal(pre.count, 2);
      assert.equal(pre.octets, 6);
      assert.equal(pre.listBody.toString(), '1 3\r\n2 3\r\n');
      assert.equal(pre.uidlBody.toString(), '1 1700000000.M1P1Q1.h\r\n2 1700000001.M1P1Q1.h\r\n');
      assert.equal((await d.readSmall?.(d.messages[1].id, 3))?.toString(), 'b\n');
    } finally {
      await d.release();
    }
  });

  test('stale after a delivery: the new message is listed', async () => {
    const { store, snapshot } = await setup({ [`new/${A}`]: 'a\n' });
    assert.equal((await snapshot()).length, 1);
    await store.deliver('alice', Readable.from([Buffer.from('Subject: x\n\nhello\n')]));
    const after = await snapshot();
    assert.equal(after.length, 2);
    assert.equal(after[1][1], 'Subject: x\r\n\r\nhello\r\n'.length);
  });

  test('stale after a deletion by another program, and after our own QUIT', async () => {
    const { md, open, snapshot } = await setup({ [`new/${A}`]: 'a\n', [`cur/${B}:2,S`]: 'b\n' });
    assert.equal((await snapshot()).length, 2);
    await unlink(join(md, 'new', A));
    assert.deepEqual(await snapshot(), [['1700000001.M1P1Q1.h', 3]]);
    await age(md);
    const d = await open();
    await d.commit([d.messages[0].id]);
    await d.release();
    assert.deepEqual(await snapshot(), []);
  });

  test('stale after a rename by another program (new/ → cur/ with flags): listed once, readable where it went', async () => {
    const { md, open, snapshot } = await setup({ [`new/${A}`]: 'a\n', [`new/${B}`]: 'b\n' });
    const before = await snapshot();
    await rename(join(md, 'new', A), join(md, 'cur', `${A}:2,S`));
    assert.deepEqual(await snapshot(), before);
    // A flag change inside cur/ renames again: still the same snapshot, still readable.
    await age(md);
    await rename(join(md, 'cur', `${A}:2,S`), join(md, 'cur', `${A}:2,RS`));
    const d = await open();
    try {
      assert.deepEqual(
        d.messages.map((m) => m.uidl),
        before.map(([u]) => u),
      );
      assert.equal((await d.readSmall?.(d.messages[0].id, 3))?.toString(), 'a\n');
    } finally {
      await d.release();
    }
  });

  test('a change of dovecot-uidlist makes it stale (UIDLs come from it)', async () => {
    const { md, snapshot } = await setup({ [`new/${A}`]: 'a\n' });
    assert.deepEqual(await snapshot(), [['1700000000.M1P1Q1.h', 3]]);
    await writeFile(join(md, 'dovecot-uidlist'), `3 V1700000000 N2\n1 :${A}\n`);
    assert.deepEqual(await snapshot(), [['000000016553F100', 3]]);
  });

  test('directories changed within the last second: the listing is written but not trusted', async () => {
    const { md, snapshot } = await setup({ [`new/${A}`]: 'a\n' });
    await writeFile(join(md, 'new', B), 'b\n'); // new/ changed just now
    assert.equal((await snapshot()).length, 2);
    assert.match(await listingHead(md), /^stamps 0 /);
    // The next open reads the directory again (and trusts the result once the change is old enough).
    await age(md);
    assert.equal((await snapshot()).length, 2);
    assert.match(await listingHead(md), /^stamps 1 /);
  });

  test('names without sizes: the second open takes the sizes from the listing, without reading the files', async () => {
    const { md, snapshot } = await setup({ 'new/1700000000.V801I1M1.mx': 'a\nb\n' });
    assert.deepEqual(await snapshot(), [['1700000000.V801I1M1.mx', 6]]);
    // Rewritten in place (no Maildir writer does this): the directory does not change, so the listing stands,
    // which shows that the warm open neither read nor stat'ed the file.
    await writeFile(join(md, 'new', '1700000000.V801I1M1.mx'), 'a\nb\nc\n');
    assert.deepEqual(await snapshot(), [['1700000000.V801I1M1.mx', 6]]);
  });

  test('a file name with a line break is served, and no listing is written for it', async () => {
    const { md, snapshot } = await setup({ [`new/${A}`]: 'a\n', 'new/1700000001.odd\nname': 'b\n' });
    assert.equal((await snapshot()).length, 2);
    await assert.rejects(readFile(join(md, LISTING_FILE)), { code: 'ENOENT' });
    assert.equal((await snapshot()).length, 2);
  });

  test('a corrupt or truncated listing is ignored and rebuilt', async () => {
    const { md, snapshot } = await setup({ [`new/${A}`]: 'a\n' });
    await snapshot();
    const text = await readFile(join(md, LISTING_FILE));
    await writeFile(join(md, LISTING_FILE), text.subarray(0, text.length - 3));
    assert.deepEqual(await snapshot(), [['1700000000.M1P1Q1.h', 3]]);
    await writeFile(join(md, LISTING_FILE), 'garbage');
    assert.deepEqual(await snapshot(), [['1700000000.M1P1Q1.h', 3]]);
  });

  test('a corrected size (a wrong ,W= found by RETR) is kept by the listing and survives a rescan', async () => {
    const liar = '1700000000.M9P9Q9.h,S=2,W=999999';
    const { md, open, snapshot } = await setup({ [`new/${liar}`]: 'a\n', [`new/${B}`]: 'b\n' });
    const d = await open();
    assert.equal(d.messages[0].size, 999_999); // the name is trusted at login: no stat on the login path
    await d.correctSize?.(d.messages[0].id, 3);
    assert.equal(d.messages[0].size, 3);
    assert.equal(d.prebuilt?.listBody.toString(), '1 3\r\n2 3\r\n');
    await d.release();
    assert.deepEqual(
      (await snapshot()).map(([, s]) => s),
      [3, 3],
    );
    await unlink(join(md, 'new', B)); // the directory changes: a rescan, which keeps the fix
    assert.deepEqual(await snapshot(), [['1700000000.M9P9Q9.h', 3]]);
  });
});
