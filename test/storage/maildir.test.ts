import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { sanitizeHostname } from '../../src/mail/maildir-name.ts';
import { transmittedSize } from '../../src/mail/size.ts';
import { LOCK_FILE, lockHost, parseHeldName } from '../../src/storage/maildir/lock.ts';
import { MaildirStore, type MaildirStoreOptions } from '../../src/storage/maildir/store.ts';
import { isStorageError } from '../../src/storage/types.ts';
import { immutable, mutable } from '../delivery/helpers.ts';
import { skipUnlessCi } from '../helpers/peers.ts';
import { deliverBytes, readAll, rejectsWith, runConformance } from './conformance.ts';

const STORE_MODULE = pathToFileURL(fileURLToPath(new URL('../../src/storage/maildir/store.ts', import.meta.url))).href;

async function tempRoot(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'postern-maildir-'));
}

runConformance('maildir', async () => {
  const root = await tempRoot();
  return {
    store: new MaildirStore({ root }),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

// The same contract with asynchronous small reads (storage.sync_small_reads = false, for NFS).
runConformance('maildir, async small reads', async () => {
  const root = await tempRoot();
  return {
    store: new MaildirStore({ root, syncSmallReads: false }),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

/** A temp root per test, removed afterwards; stores made through it are closed. */
function fixture() {
  let root = '';
  const stores: MaildirStore[] = [];
  before(async () => {
    root = await tempRoot();
  });
  after(async () => {
    for (const s of stores) await s.close();
    await rm(root, { recursive: true, force: true });
  });
  let n = 0;
  return {
    /** A fresh root subdirectory for one test. */
    async dir(): Promise<string> {
      const d = join(root, `t${++n}`);
      await mkdir(d);
      return d;
    },
    store(options: MaildirStoreOptions): MaildirStore {
      const s = new MaildirStore(options);
      stores.push(s);
      return s;
    },
  };
}

async function makeMaildir(root: string, user = 'alice'): Promise<string> {
  const md = join(root, user, 'Maildir');
  for (const f of ['new', 'cur', 'tmp']) await mkdir(join(md, f), { recursive: true });
  return md;
}

async function lsMail(md: string): Promise<string[]> {
  const out: string[] = [];
  for (const f of ['new', 'cur']) for (const n of await readdir(join(md, f))) out.push(`${f}/${n}`);
  return out.sort();
}

describe('maildir: reading Maildirs written by others', () => {
  const fx = fixture();

  test('a Postfix Maildir (LF endings, no ,S=) gives CRLF sizes; tmp/, dotfiles, dirs and symlinks are ignored', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    const a = 'Return-Path: <a@example.org>\nSubject: one\n\nhello\nworld\n';
    const b = 'Subject: two\n\nno final newline';
    await writeFile(join(md, 'new', '1700000100.V801I1a2bM345678.mx.example.org'), a);
    await writeFile(join(md, 'cur', '1700000050.V801I1a2cM12.mx.example.org:2,S'), b);
    await writeFile(join(md, 'tmp', '1700000000.V801I1M1.mx.example.org'), 'partial');
    await writeFile(join(md, 'new', '.hidden'), 'x');
    await mkdir(join(md, 'cur', 'subdir'));
    await symlink(join(md, 'new', '.hidden'), join(md, 'cur', '1700000001.link.host'));
    const store = fx.store({ root });
    const d = await store.openMaildrop('alice');
    assert.deepEqual(
      d.messages.map((m) => ({ ...m })),
      [
        { id: '1700000050.V801I1a2cM12.mx.example.org', uidl: '1700000050.V801I1a2cM12.mx.example.org', size: 34 },
        {
          id: '1700000100.V801I1a2bM345678.mx.example.org',
          uidl: '1700000100.V801I1a2bM345678.mx.example.org',
          size: 60,
        },
      ],
    );
    assert.equal(d.messages[0].size, Buffer.byteLength(b) + 2 + 2);
    assert.equal(d.messages[1].size, Buffer.byteLength(a) + 5);
    assert.equal((await readAll(await d.open(d.messages[1].id))).toString(), a);
    assert.deepEqual(await store.stats('alice'), { messages: 2, bytes: 94 });
    await d.release();
  });

  test('names without sizes: synchronous and asynchronous measuring agree with the CRLF size, also past 64 KiB reads and the synchronous limit', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    const line = (n: number) => `line ${n} ${'x'.repeat(n % 97)}\n`;
    const many = (count: number) => Array.from({ length: count }, (_, i) => line(i)).join('');
    const bodies = [
      '', // empty
      'Subject: a\r\n\r\nmixed\nendings\r\nno final newline',
      many(2_000), // ~110 KB: several 64 KiB reads, synchronously
      many(6_000), // ~330 KB: over SYNC_MEASURE_MAX, measured asynchronously even by the synchronous store
      `${'y'.repeat(65_535)}\r\n${'z'.repeat(10)}\n`, // a CRLF split across the first 64 KiB read
    ];
    for (const [i, b] of bodies.entries()) {
      await writeFile(join(md, 'new', `17000002${String(i).padStart(2, '0')}.V801I1M${i}.mx.example.org`), b);
    }
    const want = bodies.map((b) => transmittedSize(Buffer.from(b)));
    for (const syncSmallReads of [true, false]) {
      await rm(join(md, 'postern-sizes'), { force: true });
      await rm(join(md, 'postern-listing'), { force: true });
      const d = await fx.store({ root, syncSmallReads }).openMaildrop('alice');
      assert.deepEqual(
        d.messages.map((m) => m.size),
        want,
        `syncSmallReads = ${syncSmallReads}`,
      );
      await d.release();
    }
  });

  test('Dovecot names: size from ,W= without reading the file; UIDL is the part before the first comma', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    await writeFile(join(md, 'cur', '1700000000.M123P45Q6.imap.example.org,S=10,W=999:2,S'), 'tiny\n');
    await writeFile(join(md, 'new', '1700000001.M5P45Q7.imap.example.org,S=5,W=6'), 'tiny\n');
    const d = await fx.store({ root }).openMaildrop('alice');
    assert.deepEqual(
      d.messages.map((m) => ({ ...m })),
      [
        {
          id: '1700000000.M123P45Q6.imap.example.org,S=10,W=999',
          uidl: '1700000000.M123P45Q6.imap.example.org',
          size: 999,
        },
        { id: '1700000001.M5P45Q7.imap.example.org,S=5,W=6', uidl: '1700000001.M5P45Q7.imap.example.org', size: 6 },
      ],
    );
    await d.release();
  });

  test('order: by leading time numerically, then microseconds, then name', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    const names = [
      '1000000000.M5P1Q1.h',
      '999999999.M1P1Q1.h',
      '1000000000.M100P1Q2.h',
      '1000000000.M99P1Q3.h',
      '1000000000.V1I2.h',
      'nodigits.h',
    ];
    for (const n of names) await writeFile(join(md, 'cur', `${n},W=1:2,`), 'x');
    const d = await fx.store({ root }).openMaildrop('alice');
    assert.deepEqual(
      d.messages.map((m) => m.id.slice(0, -4)),
      [
        '999999999.M1P1Q1.h',
        '1000000000.V1I2.h',
        '1000000000.M5P1Q1.h',
        '1000000000.M99P1Q3.h',
        '1000000000.M100P1Q2.h',
        'nodigits.h',
      ],
    );
    await d.release();
  });

  test('UIDLs: too long or non-ASCII names get a digest; names sharing a unique part all get digests', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    const long = `1700000000.M1P1Q1.${'h'.repeat(80)}`;
    await writeFile(join(md, 'cur', `${long},W=1`), 'x');
    await writeFile(join(md, 'cur', '1700000001.M1P1Q1.hôte,W=1'), 'x');
    await writeFile(join(md, 'cur', '1700000002.M1P1Q1.h,S=1,W=1'), 'x');
    await writeFile(join(md, 'cur', '1700000002.M1P1Q1.h,S=2,W=1'), 'x');
    await writeFile(join(md, 'cur', '1700000003.M1P1Q1.h,W=1'), 'x');
    const store = fx.store({ root });
    const uidls = async () => {
      const d = await store.openMaildrop('alice');
      const u = d.messages.map((m) => m.uidl);
      await d.release();
      return u;
    };
    const first = await uidls();
    assert.equal(new Set(first).size, 5);
    for (const u of first) assert.match(u, /^[\x21-\x7e]{1,70}$/);
    assert.equal(first[0].length, 43);
    assert.equal(first[1].length, 43);
    assert.equal(first[2].length, 43);
    assert.equal(first[3].length, 43);
    assert.equal(first[4], '1700000003.M1P1Q1.h');
    assert.deepEqual(await uidls(), first);
  });

  test("dovecot-uidlist: Dovecot's default POP3 UIDL (%08Xu%08Xv), its P override and W size", async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    await writeFile(join(md, 'cur', '1600000000.M1P1Q1.old,S=5:2,S'), 'a\r\nb\r\n');
    await writeFile(join(md, 'cur', '1600000001.M1P1Q2.old,S=5:2,S'), 'c\r\nd\r\n');
    await writeFile(join(md, 'cur', '1600000002.M1P1Q3.old:2,'), 'e\r\nf\r\n');
    await writeFile(join(md, 'new', '1600000003.M1P1Q4.old'), 'g\r\n');
    await writeFile(join(md, 'new', '1600000004.M1P1Q5.new'), 'h\r\n');
    await writeFile(
      join(md, 'dovecot-uidlist'),
      [
        '3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1',
        '26 :1600000000.M1P1Q1.old,S=5',
        '255 W777 :1600000001.M1P1Q2.old,S=5:2,S',
        '300 Pmy-old-uidl :1600000002.M1P1Q3.old',
        '301 P :1600000003.M1P1Q4.old',
        '',
      ].join('\n'),
    );
    const d = await fx.store({ root }).openMaildrop('alice');
    assert.deepEqual(
      d.messages.map((m) => [m.uidl, m.size]),
      [
        ['0000001A4C0907B0', 6],
        ['000000FF4C0907B0', 777],
        ['my-old-uidl', 6],
        ['1600000003.M1P1Q4.old', 3],
        ['1600000004.M1P1Q5.new', 3],
      ],
    );
    await d.release();
  });
});

describe('maildir: UIDLs, moves and deletion', () => {
  const fx = fixture();

  test('UIDLs and ids stay the same across reopen, restart and a move new/ → cur/ with flags', async () => {
    const root = await fx.dir();
    const store = fx.store({ root });
    const r = await deliverBytes(store, 'alice', 'Subject: x\r\n\r\nx\r\n');
    const md = store.maildirPath('alice');
    const d1 = await store.openMaildrop('alice');
    const info = { ...d1.messages[0] };
    await d1.release();
    assert.deepEqual(await lsMail(md), [`new/${r.id}`]);
    await rename(join(md, 'new', r.id), join(md, 'cur', `${r.id}:2,S`));
    const d2 = await fx.store({ root }).openMaildrop('alice');
    assert.deepEqual({ ...d2.messages[0] }, info);
    assert.equal((await readAll(await d2.open(info.id))).toString(), 'Subject: x\r\n\r\nx\r\n');
    await d2.release();
  });

  test('a message moved or re-flagged during the session is found again for open and commit', async () => {
    const root = await fx.dir();
    const store = fx.store({ root });
    const r1 = await deliverBytes(store, 'alice', 'one\r\n');
    const r2 = await deliverBytes(store, 'alice', 'two\r\n');
    const md = store.maildirPath('alice');
    const d = await store.openMaildrop('alice');
    await rename(join(md, 'new', r1.id), join(md, 'cur', `${r1.id}:2,S`));
    assert.equal((await readAll(await d.open(r1.id))).toString(), 'one\r\n');
    await rename(join(md, 'cur', `${r1.id}:2,S`), join(md, 'cur', `${r1.id}:2,RS`));
    await rename(join(md, 'new', r2.id), join(md, 'cur', `${r2.id}:2,`));
    await d.commit([r1.id]);
    await d.release();
    assert.deepEqual(await lsMail(md), [`cur/${r2.id}:2,`]);
  });

  test('commit unlinks exactly the marked files and nothing else', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    const names = [
      'new/1700000001.V1I1M1.mx',
      'new/1700000002.V1I2M1.mx',
      'cur/1700000003.M1P1Q1.imap,S=3,W=4:2,S',
      'cur/1700000004.M1P1Q2.imap,S=3,W=4:2,',
      'tmp/1700000005.M1P1Q3.imap',
    ];
    for (const n of names) await writeFile(join(md, n), 'ab\n');
    await writeFile(join(md, 'cur', '.keep'), '');
    const d = await fx.store({ root }).openMaildrop('alice');
    assert.equal(d.messages.length, 4);
    await d.commit([d.messages[1].id, d.messages[2].id]);
    await d.release();
    assert.deepEqual(await lsMail(md), [
      'cur/.keep',
      'cur/1700000004.M1P1Q2.imap,S=3,W=4:2,',
      'new/1700000001.V1I1M1.mx',
    ]);
    assert.deepEqual(await readdir(join(md, 'tmp')), ['1700000005.M1P1Q3.imap']);
  });
});

describe('maildir: delivery', () => {
  const fx = fixture();

  test('deliver publishes into new/ a name with S= and W=, leaves tmp/ empty, and creates the Maildir 0700', async () => {
    const root = await fx.dir();
    const store = fx.store({ root, hostname: 'mx/1:a,b' });
    const text = 'Subject: d\n\nbody\n';
    const r = await deliverBytes(store, 'alice', text);
    const md = store.maildirPath('alice');
    assert.equal(md, join(root, 'alice', 'Maildir'));
    assert.match(r.id, /^\d{10}\.M\d+P\d+Q\d+\.mx\\0571\\072a\\054b,S=17,W=20$/);
    assert.equal(r.size, 20);
    assert.deepEqual(await lsMail(md), [`new/${r.id}`]);
    assert.deepEqual(await readdir(join(md, 'tmp')), []);
    assert.equal(await readFile(join(md, 'new', r.id), 'utf8'), text);
    for (const f of ['', 'new', 'cur', 'tmp']) assert.equal((await stat(join(md, f))).mode & 0o777, 0o700);
    const d = await store.openMaildrop('alice');
    assert.equal(d.messages[0].uidl, r.id.slice(0, r.id.indexOf(',')));
    await d.release();
  });

  test('a delivery whose stream fails leaves nothing in new/, cur/ or tmp/', async () => {
    const root = await fx.dir();
    const store = fx.store({ root });
    async function* failing() {
      yield Buffer.alloc(200_000, 0x41);
      throw new Error('peer went away');
    }
    await assert.rejects(store.deliver('alice', Readable.from(failing())), (e: unknown) => isStorageError(e, 'temp'));
    const md = store.maildirPath('alice');
    assert.deepEqual(await lsMail(md), []);
    assert.deepEqual(await readdir(join(md, 'tmp')), []);
  });

  test('a delivering process killed mid-message leaves no message in new/ or cur/', async () => {
    const root = await fx.dir();
    const code = `
      const { MaildirStore } = await import(process.env.STORE_MODULE);
      const { PassThrough } = await import('node:stream');
      const store = new MaildirStore({ root: process.env.ROOT });
      const body = new PassThrough();
      store.deliver('alice', body);
      body.write(Buffer.alloc(300000, 0x42));
      setTimeout(() => process.stdout.write('writing\\n'), 200);
      setInterval(() => {}, 1000);
    `;
    const child = spawnNode(code, { ROOT: root });
    await waitForLine(child, 'writing');
    child.kill('SIGKILL');
    await once(child, 'exit');
    const md = join(root, 'alice', 'Maildir');
    assert.deepEqual(await lsMail(md), []);
    assert.equal((await readdir(join(md, 'tmp'))).length, 1); // the partial file, which no reader looks at
    const d = await fx.store({ root }).openMaildrop('alice');
    assert.equal(d.messages.length, 0);
    await d.release();
  });

  test('id layout: %d/%n, and ids that would escape are refused', async () => {
    const root = await fx.dir();
    const store = fx.store({ root, layout: '%d/%n/Maildir' });
    assert.equal(store.maildirPath('bob@example.com'), join(root, 'example.com', 'bob', 'Maildir'));
    await rejectsWith(store.stats('bob'), 'perm');
    await deliverBytes(store, 'bob@example.com', 'x\r\n');
    assert.equal((await store.stats('bob@example.com')).messages, 1);
  });
});

describe('maildir: snapshot and size cache', () => {
  const fx = fixture();

  test('mail delivered during a session is not in its snapshot and is there in the next one', async () => {
    const root = await fx.dir();
    const store = fx.store({ root });
    const first = await deliverBytes(store, 'alice', 'one\r\n');
    const d = await store.openMaildrop('alice');
    const late = await deliverBytes(store, 'alice', 'two\r\n');
    assert.deepEqual(
      d.messages.map((m) => m.id),
      [first.id],
    );
    await d.release();
    const d2 = await store.openMaildrop('alice');
    assert.deepEqual(
      d2.messages.map((m) => m.id),
      [first.id, late.id],
    );
    await d2.release();
  });

  test('sizes of names without W= are cached, trusted while size+mtime match, and re-counted when not', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    const file = join(md, 'new', '1700000000.V801I1M1.mx');
    await writeFile(file, 'abcde\n'); // 6 bytes, 7 transmitted
    const old = new Date('2024-01-01T00:00:00Z');
    await utimes(file, old, old);
    const store = fx.store({ root });
    const size = async () => {
      const d = await store.openMaildrop('alice');
      const s = d.messages[0].size;
      await d.release();
      return s;
    };
    assert.equal(await size(), 7);
    assert.match(
      await readFile(join(md, 'postern-sizes'), 'utf8'),
      /^postern-sizes 1\n1700000000\.V801I1M1\.mx 6 \d+ 7\n$/,
    );

    // Same length, same mtime, other content: only the cache can answer 7, a re-read would say 12.
    await writeFile(file, '\n\n\n\n\n\n');
    await utimes(file, old, old);
    assert.equal(await size(), 7);

    // A changed mtime makes the entry stale: re-counted and the cache repaired.
    await utimes(file, new Date(), new Date());
    assert.equal(await size(), 12);
    assert.match(await readFile(join(md, 'postern-sizes'), 'utf8'), / 6 \d+(\.\d+)? 12\n$/);
  });

  test('with ,S= in the name a matching cache entry is used without a stat; entries of deleted mail are dropped', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    await writeFile(join(md, 'cur', '1700000000.M1P1Q1.h,S=2:2,S'), 'a\n');
    await writeFile(join(md, 'cur', '1700000001.M1P1Q1.h,S=2:2,S'), 'b\n');
    await writeFile(
      join(md, 'postern-sizes'),
      'postern-sizes 1\n1700000000.M1P1Q1.h,S=2 2 0 42\n1699999999.gone.h 1 0 9\n',
    );
    const store = fx.store({ root });
    const d = await store.openMaildrop('alice');
    assert.deepEqual(
      d.messages.map((m) => m.size),
      [42, 3],
    );
    const cache = await readFile(join(md, 'postern-sizes'), 'utf8');
    assert.doesNotMatch(cache, /gone/);
    assert.match(cache, /1700000001\.M1P1Q1\.h,S=2 2 \S+ 3\n/);
    await d.commit([d.messages[0].id]);
    await d.release();
    assert.doesNotMatch(await readFile(join(md, 'postern-sizes'), 'utf8'), /1700000000/);
  });

  test('a cache entry that disagrees with the file is re-counted; stats of an unknown mailbox creates nothing', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    await writeFile(join(md, 'new', '1700000000.V1I1M1.mx'), 'a\n');
    await writeFile(join(md, 'postern-sizes'), 'postern-sizes 1\n1700000000.V1I1M1.mx 99 0 9\n');
    const store = fx.store({ root });
    assert.deepEqual(await store.stats('alice'), { messages: 1, bytes: 3 });
    assert.deepEqual(await store.stats('nobody'), { messages: 0, bytes: 0 });
    await assert.rejects(stat(join(root, 'nobody')), { code: 'ENOENT' });
  });
});

describe('maildir: quota and permissions at delivery', () => {
  const fx = fixture();

  test('a delivery under a quota whose delivery lock the file system refuses (EPERM) is temporary, not a bounce', async (t) => {
    const root = await fx.dir();
    const store = fx.store({ root });
    await deliverBytes(store, 'alice', 'first\r\n');
    const md = store.maildirPath('alice');
    const why = immutable(md);
    if (why !== null) return t.skip(skipUnlessCi(why) || why);
    try {
      const quota = { bytes: 1_000_000, messages: 0 };
      await assert.rejects(store.deliver('alice', Readable.from([Buffer.from('x\r\n')]), { quota }), (e) => {
        assert.ok(isStorageError(e), String(e));
        assert.notEqual(e.kind, 'perm', `${e.kind}: ${e.message}`);
        return true;
      });
    } finally {
      mutable(md);
    }
    assert.deepEqual(await readdir(join(md, 'tmp')), [], 'the refused copy is removed from tmp/');
    assert.equal((await store.stats('alice')).messages, 1);
  });
});

describe('maildir: leftovers of crashed writers (tmp/ and our own temporary files)', () => {
  const fx = fixture();
  const host = sanitizeHostname(hostname());
  const hours = (h: number) => new Date(Date.now() - h * 3600 * 1000);
  async function put(path: string, mtime?: Date): Promise<void> {
    await writeFile(path, 'partial');
    if (mtime) await utimes(path, mtime, mtime);
  }
  async function deadPid(): Promise<number> {
    const child = spawn(process.execPath, ['-e', '0']);
    await once(child, 'exit');
    return child.pid ?? 0;
  }

  test('the first open sweeps; only files whose writer cannot still be writing go', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    const dead = await deadPid();
    const tmp = (n: string) => join(md, 'tmp', n);
    await put(tmp(`1700000000.M1P${dead}Q1.${host}`)); // ours, writer gone: at once
    await put(tmp(`1700000000.M2P${process.ppid}Q1.${host}`)); // ours, writer alive: kept
    await put(tmp(`1700000000.M3P${process.pid}Q1.${host}`)); // this process's (in flight): kept
    await put(tmp(`1700000000.M4P${dead}Q1.elsewhere`)); // another host's, young: kept
    await put(tmp('1700000000.V801I2M3.postfix'), hours(37)); // another program's, 37 h: gone
    await put(tmp('1700000000.V801I2M4.postfix'), hours(35)); // 35 h: kept
    await put(join(md, `.postern-sizes.${dead}.a1b2c3d4e5f6.tmp`)); // our temporary, writer gone
    await put(join(md, `postern-sizes.${dead}.a1b2c3d4e5f7.tmp`)); // the same, as named before src/durable
    await put(join(md, `postern-state.json.${process.ppid}.a1b2c3d4e5f6.tmp`)); // live writer, young: kept
    await put(join(md, `postern-listing.${process.ppid}.0a0b0c0d0e0f.tmp`), hours(1)); // live pid, 1 h old: gone
    await put(join(md, 'postern-pop3.lock.takeover'), hours(1)); // the old lock scheme's mutex
    await put(join(md, 'notes.tmp'), hours(100)); // not ours: kept
    const store = fx.store({ root });
    await (await store.openMaildrop('alice')).release();
    assert.deepEqual((await readdir(join(md, 'tmp'))).sort(), [
      `1700000000.M2P${process.ppid}Q1.${host}`,
      `1700000000.M3P${process.pid}Q1.${host}`,
      `1700000000.M4P${dead}Q1.elsewhere`,
      '1700000000.V801I2M4.postfix',
    ]);
    const rest = (await readdir(md)).filter((n) => n.endsWith('.tmp') || n.includes('takeover'));
    assert.deepEqual(rest.sort(), ['notes.tmp', `postern-state.json.${process.ppid}.a1b2c3d4e5f6.tmp`].sort());
  });

  test('then at most every leftoverSweepMs, at open and at delivery', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    const interval = 3_000;
    const store = fx.store({ root, leftoverSweepMs: interval });
    const leftover = join(md, 'tmp', `1700000000.M1P${await deadPid()}Q1.${host}`);
    const first = Date.now();
    await (await store.openMaildrop('alice')).release(); // the first sweep
    await put(leftover);
    await (await store.openMaildrop('alice')).release();
    assert.ok(Date.now() - first < interval, 'the machine is too slow for this test');
    assert.ok((await readdir(join(md, 'tmp'))).length === 1, 'not swept again within the interval');
    await new Promise((r) => setTimeout(r, interval - (Date.now() - first) + 50));
    await deliverBytes(store, 'alice', 'x\r\n');
    await assert.rejects(stat(leftover), { code: 'ENOENT' });
  });

  test('a delivering process sweeps a mailbox nobody logs into', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    const leftover = join(md, 'tmp', `1700000000.M1P${await deadPid()}Q1.${host}`);
    await put(leftover);
    await deliverBytes(fx.store({ root }), 'alice', 'x\r\n');
    assert.deepEqual(await readdir(join(md, 'tmp')), []);
  });
});

describe('maildir: the session lock', () => {
  const fx = fixture();
  const lockFile = (md: string) => join(md, 'postern-pop3.lock');
  const me = lockHost(hostname());
  /** The held lock files of a Maildir: `postern-pop3.lock.<pid>.<token>.<host>`. */
  const heldFiles = async (md: string) => (await readdir(md)).filter((n) => parseHeldName(LOCK_FILE, n) !== null);
  /** Puts a held lock file of `pid` on `host` with the given age, as another process would have left it. */
  const holder = async (md: string, pid: number, host: string, ageMs = 0) => {
    const name = `${LOCK_FILE}.${pid}.${'ab'.repeat(8)}.${host}`;
    await rm(lockFile(md), { force: true });
    await writeFile(join(md, name), '');
    const t = new Date(Date.now() - ageMs);
    await utimes(join(md, name), t, t);
    return name;
  };

  test('two stores in one process exclude each other; release frees; the lock file is only renamed', async () => {
    const root = await fx.dir();
    const a = fx.store({ root });
    const b = fx.store({ root });
    const d = await a.openMaildrop('alice');
    const md = a.maildirPath('alice');
    const [held] = await heldFiles(md);
    assert.deepEqual(parseHeldName(LOCK_FILE, held), { pid: process.pid, token: held.split('.')[3], host: me });
    await assert.rejects(stat(lockFile(md)), { code: 'ENOENT' });
    const ino = (await stat(join(md, held))).ino;
    await rejectsWith(b.openMaildrop('alice'), 'inuse');
    await d.release();
    assert.deepEqual(await heldFiles(md), []);
    assert.equal((await stat(lockFile(md))).ino, ino, 'the same file, renamed back');
    assert.equal((await stat(lockFile(md))).size, 0);
    const e = await b.openMaildrop('alice');
    await rejectsWith(a.openMaildrop('alice'), 'inuse');
    await e.release();
  });

  test('a lock not refreshed for lockStaleMs is taken over; a fresh one from another host is respected', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    const name = await holder(md, 1, 'elsewhere');
    const store = fx.store({ root });
    await rejectsWith(store.openMaildrop('alice'), 'inuse');
    const old = new Date(Date.now() - 121_000);
    await utimes(join(md, name), old, old);
    const d = await store.openMaildrop('alice');
    const held = await heldFiles(md);
    assert.equal(held.length, 1);
    assert.equal(parseHeldName(LOCK_FILE, held[0])?.pid, process.pid);
    assert.ok(Date.now() - (await stat(join(md, held[0]))).mtimeMs < 60_000, 'touched when taken over');
    await d.release();
  });

  test('a Maildir without a lock file (made by another program) gets one; foreign files are left alone', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    await writeFile(join(md, `${LOCK_FILE}.notours`), 'x');
    const store = fx.store({ root });
    await (await store.openMaildrop('alice')).release();
    assert.equal((await stat(lockFile(md))).size, 0);
    assert.equal(await readFile(join(md, `${LOCK_FILE}.notours`), 'utf8'), 'x');
  });

  test("the lock of a dead process on this host is taken over at once; a leftover with this process's pid too", async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    const child = spawn(process.execPath, ['-e', '0']);
    await once(child, 'exit');
    await holder(md, child.pid ?? 0, me);
    const store = fx.store({ root });
    await (await store.openMaildrop('alice')).release();
    await holder(md, process.pid, me);
    await (await store.openMaildrop('alice')).release();
    // A live process (our parent) on this host holds it: respected.
    await holder(md, process.ppid, me);
    await rejectsWith(store.openMaildrop('alice'), 'inuse');
  });

  test('a held lock is refreshed, so it never goes stale while its session lives', async () => {
    const root = await fx.dir();
    const a = fx.store({ root, lockStaleMs: 400, lockRefreshMs: 50 });
    const b = fx.store({ root, lockStaleMs: 400, lockRefreshMs: 50 });
    const d = await a.openMaildrop('alice');
    await new Promise((r) => setTimeout(r, 1_000));
    await rejectsWith(b.openMaildrop('alice'), 'inuse');
    await d.release();
    await (await b.openMaildrop('alice')).release();
  });

  test('release leaves alone a lock file that is no longer ours', async () => {
    const root = await fx.dir();
    const store = fx.store({ root });
    const d = await store.openMaildrop('alice');
    const md = store.maildirPath('alice');
    // Someone judged us stale and took over: our file now has their name.
    const [ours] = await heldFiles(md);
    const theirs = `${LOCK_FILE}.1.${'cd'.repeat(8)}.elsewhere`;
    await rename(join(md, ours), join(md, theirs));
    await d.release();
    assert.deepEqual(await heldFiles(md), [theirs]);
    await assert.rejects(stat(lockFile(md)), { code: 'ENOENT' });
  });

  test('racing takers of one stale lock, and of a free one: exactly one wins', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    await holder(md, 1, 'elsewhere', 200_000);
    for (let round = 0; round < 2; round++) {
      const stores = Array.from({ length: 8 }, () => fx.store({ root }));
      const results = await Promise.allSettled(stores.map((s) => s.openMaildrop('alice')));
      const won = results.filter((r) => r.status === 'fulfilled');
      assert.equal(won.length, 1);
      for (const r of results) if (r.status === 'rejected') assert.ok(isStorageError(r.reason, 'inuse'));
      assert.equal((await heldFiles(md)).length, 1);
      for (const r of won) await r.value.release();
    }
  });

  test('two lock files (a race with a program that made one): a newcomer gives way to the live holder', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    await holder(md, process.ppid, me);
    await writeFile(lockFile(md), ''); // a free file beside a live holder's
    const store = fx.store({ root });
    await rejectsWith(store.openMaildrop('alice'), 'inuse');
    assert.equal((await heldFiles(md)).length, 1, 'the newcomer removed its own file');
  });

  test('the lock holds across OS processes, and is taken over once the holder is killed', async () => {
    const root = await fx.dir();
    const code = `
      const { MaildirStore } = await import(process.env.STORE_MODULE);
      const store = new MaildirStore({ root: process.env.ROOT, lockRefreshMs: 100, lockStaleMs: 60000 });
      await store.openMaildrop('alice');
      process.stdout.write('locked\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawnNode(code, { ROOT: root });
    try {
      await waitForLine(child, 'locked');
      const store = fx.store({ root });
      await rejectsWith(store.openMaildrop('alice'), 'inuse');
      child.kill('SIGKILL');
      await once(child, 'exit'); // reaped: its pid no longer exists
      const d = await store.openMaildrop('alice');
      await d.release();
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});

describe('maildir: a 100 000-message mailbox', () => {
  const fx = fixture();
  const COUNT = 100_000;
  // Reading 100 000 files once takes a while on a slow disk; POSTERN_BIG_TESTS=1 runs the full size.
  const PLAIN_COUNT = process.env.POSTERN_BIG_TESTS === '1' ? COUNT : 10_000;

  function createFiles(md: string, count: number, name: (i: number) => string, content: Buffer): void {
    // Synchronous on purpose: the fastest way to make 100 000 files.
    for (let i = 0; i < count; i++) {
      const fd = openSync(join(md, name(i)), 'w');
      if (content.length > 0) writeSync(fd, content);
      closeSync(fd);
    }
  }

  test('with ,W= names: opens, lists and stats without reading messages', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    let t = Date.now();
    createFiles(
      md,
      COUNT,
      (i) =>
        i % 2
          ? `new/${1600000000 + i}.M${i}P1Q${i}.h,S=1,W=${i % 7}`
          : `cur/${1600000000 + i}.M${i}P1Q${i}.h,S=1,W=${i % 7}:2,S`,
      Buffer.alloc(0),
    );
    console.log(`  created ${COUNT} files in ${Date.now() - t} ms`);
    const store = fx.store({ root });
    t = Date.now();
    const d = await store.openMaildrop('alice');
    const ms = Date.now() - t;
    console.log(`  openMaildrop, ${COUNT} messages with ,W=: ${ms} ms`);
    assert.equal(d.messages.length, COUNT);
    assert.equal(d.messages[0].id, '1600000000.M0P1Q0.h,S=1,W=0');
    assert.equal(d.messages[COUNT - 1].size, (COUNT - 1) % 7);
    t = Date.now();
    const s = await store.stats('alice');
    console.log(`  stats: ${Date.now() - t} ms`);
    assert.equal(s.messages, COUNT);
    await d.release();
    assert.ok(ms < 30_000);
  });

  test('with plain Postfix names: first open counts every file, later opens use the size cache', async () => {
    const root = await fx.dir();
    const md = await makeMaildir(root);
    createFiles(
      md,
      PLAIN_COUNT,
      (i) => `new/${1600000000 + i}.V801I${i.toString(16)}M${i}.mx`,
      Buffer.from('Subject: x\n\nhi\n'),
    );
    const store = fx.store({ root });
    let t = Date.now();
    const d1 = await store.openMaildrop('alice');
    const first = Date.now() - t;
    await d1.release();
    t = Date.now();
    const d2 = await store.openMaildrop('alice');
    const second = Date.now() - t;
    console.log(
      `  openMaildrop, ${PLAIN_COUNT} messages without ,W=: first ${first} ms (reads all), then ${second} ms (cache)`,
    );
    assert.equal(d2.messages.length, PLAIN_COUNT);
    assert.ok(d2.messages.every((m) => m.size === 18));
    await d2.release();
    assert.ok(first < 60_000 && second < 30_000);
  });
});

function spawnNode(code: string, env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    env: { ...process.env, ...env, STORE_MODULE },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

async function waitForLine(child: ChildProcess, line: string): Promise<void> {
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child did not print ${line}`)), 20_000);
    child.stdout?.on('data', (c: Buffer) => {
      buf += c.toString();
      if (buf.split('\n').includes(line)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`child exited before printing ${line}`));
    });
  });
}
