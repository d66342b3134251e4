/** The UIDL state file and crash recovery of each delivery kind, at the exact instants a kill can hit. */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createDelivery } from '../../src/fetch/deliver.ts';
import { StateLockedError, UidlState } from '../../src/fetch/state.ts';
import { removeTempDir, tempDir } from '../helpers/tmp.ts';

const dir = tempDir('state');
after(() => removeTempDir(dir));
let n = 0;
const fresh = () => join(dir, `s${n++}`);

describe('UIDL state', () => {
  it('commits survive a reopen; a torn last journal line is ignored', () => {
    const f = join(fresh(), 'a.json');
    const s = UidlState.open(f, 'a');
    s.begin('u1', { file: 'x' });
    s.commit('u1', 1000);
    s.commit('u2', 2000);
    s.close();
    writeFileSync(`${f}.journal`, '{"op":"done","uidl":"u3","at":3', { flag: 'a' }); // killed mid-append
    const t = UidlState.open(f, 'a');
    assert.ok(t.has('u1') && t.has('u2') && !t.has('u3'));
    assert.equal(t.deliveredAt('u2'), 2000);
    assert.equal(t.pending.size, 0);
    t.compact(new Set(['u2']));
    t.close();
    assert.ok(!existsSync(`${f}.journal`));
    const u = UidlState.open(f, 'a');
    assert.ok(!u.has('u1') && u.has('u2'));
    u.close();
  });

  it('a begun delivery without its commit is reported as pending, also across a compaction', () => {
    const f = join(fresh(), 'a.json');
    const s = UidlState.open(f, 'a');
    s.begin('u1', { offset: 42 });
    s.close();
    const t = UidlState.open(f, 'a');
    assert.deepEqual([...t.pending], [['u1', { offset: 42 }]]);
    t.compact();
    t.close();
    const u = UidlState.open(f, 'a');
    assert.deepEqual([...u.pending], [['u1', { offset: 42 }]]);
    u.abandon('u1');
    u.close();
  });

  it('two runs of one account exclude each other; a dead run’s lock is taken over', () => {
    const f = join(fresh(), 'a.json');
    const s = UidlState.open(f, 'a');
    assert.throws(() => UidlState.open(f, 'a'), StateLockedError);
    s.close();
    writeFileSync(`${f}.lock`, '999999999\n'); // no such process
    UidlState.open(f, 'a').close();
  });
});

describe('delivery recovery', () => {
  const msg = Buffer.from('Subject: x\r\n\r\nFrom here\r\nbody\r\n');
  const meta = { uidl: 'u', size: 1, account: 'a' };

  it('Maildir: a message renamed into new/ (or moved to cur/) counts as delivered; otherwise tmp/ is cleaned', async () => {
    const md = fresh();
    const d = createDelivery({ kind: 'maildir', path: md });
    await d.prepare();
    const [intent, second] = d.reserve(2);
    d.begin(intent, meta);
    d.write(msg);
    d.end();
    assert.equal(d.commit(), 1);
    assert.deepEqual(await d.recover([intent]), [true]);
    // A reader moved it to cur/ with flags.
    const name = intent.file ?? '';
    writeFileSync(join(md, 'cur', `${name}:2,S`), readFileSync(join(md, 'new', name)));
    rmSync(join(md, 'new', name));
    // Killed before the rename: only tmp/ has the second one.
    d.begin(second, meta);
    d.write(msg.subarray(0, 5));
    assert.deepEqual(await d.recover([intent, second]), [true, false]);
    assert.deepEqual(readdirSync(join(md, 'tmp')), []);
    await d.close();
  });

  it('Maildir: messages ended but not committed stay invisible, and close() removes them', async () => {
    const md = fresh();
    const d = createDelivery({ kind: 'maildir', path: md });
    await d.prepare();
    const [a] = d.reserve(1);
    d.begin(a, meta);
    d.write(msg);
    d.end();
    assert.deepEqual(readdirSync(join(md, 'new')), []);
    await d.close();
    assert.deepEqual(readdirSync(join(md, 'tmp')), []);
  });

  it('mbox: an unconfirmed append is cut back to where it began', async () => {
    const base = fresh();
    mkdirSync(base);
    const mbox = join(base, 'inbox');
    const d = createDelivery({ kind: 'mbox', path: mbox });
    await d.prepare();
    const [i1] = d.reserve(1);
    d.begin(i1, meta);
    d.write(msg);
    d.end();
    d.commit();
    await d.close();
    assert.ok(!existsSync(`${mbox}.lock`));
    const size = statSync(mbox).size;
    writeFileSync(mbox, 'From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nSubject: cut off in the midd', { flag: 'a' });
    assert.deepEqual(await d.recover([{ offset: size }]), [false]);
    assert.equal(statSync(mbox).size, size);
    assert.ok(readFileSync(mbox, 'latin1').includes('>From here'));
    assert.ok(!existsSync(`${mbox}.lock`));
  });
});
