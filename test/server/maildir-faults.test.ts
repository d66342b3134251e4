/**
 * Regression tests for two Maildir defects of issue 13, against the real `postern serve` process:
 *   - defect 4: one unreadable message file (mode 000, no size in its name) no longer blocks the mailbox: the
 *     login succeeds, the message is listed with its stored size, its RETR answers -ERR [SYS/TEMP], the others
 *     are served, and the log says why;
 *   - defect 16: a `,W=` in a file name that cannot be the file's size (S ≤ W ≤ 2·S + 2 fails) is caught when
 *     RETR or TOP opens the file: the true octet count is announced and sent, the log says so, and the next
 *     session lists the true size.
 * When the tests run as root (where mode 000 blocks nothing), the server runs as `nobody`.
 */
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type RealServer, startRealServer } from '../helpers/realServer.ts';
import { Wire } from '../helpers/wire.ts';

const NOBODY = { uid: 65534, gid: 65534 };
const asRoot = process.getuid?.() === 0;

let srv: RealServer;

/** Transmitted size of LF-only text: every LF gains a CR. */
const wireSize = (text: string) => Buffer.byteLength(text) + (text.match(/\n/g) ?? []).length;

const ONE = 'Subject: one\n\nfirst\n';
const TWO = 'Subject: two\n\nsecond, unreadable\n';
const THREE = 'Subject: three\n\nthird\n';
const LIAR = 'Subject: liar\n\nhello\n';
const BIG = `Subject: big\n\n${'x'.repeat(70)}\n`.repeat(3000);

before(async () => {
  srv = await startRealServer(asRoot ? { runAs: NOBODY } : {});
  srv.addUser('alice', 'pw');
  srv.addUser('bob', 'pw');
  const a = srv.maildir('alice');
  const b = srv.maildir('bob');
  const { mkdirSync } = await import('node:fs');
  for (const md of [a, b]) for (const d of ['new', 'cur', 'tmp']) mkdirSync(join(md, d), { recursive: true });
  writeFileSync(join(a, 'new', '1700000001.V801I1M1.mx'), ONE);
  writeFileSync(join(a, 'new', '1700000002.V801I2M1.mx'), TWO);
  writeFileSync(join(a, 'new', '1700000003.V801I3M1.mx'), THREE);
  writeFileSync(join(b, 'new', `1700000001.M1P1Q1.h,S=${LIAR.length},W=999999`), LIAR);
  writeFileSync(join(b, 'new', `1700000002.M1P1Q1.h,S=${BIG.length},W=10`), BIG);
  writeFileSync(join(b, 'new', `1700000003.M1P1Q1.h,S=${ONE.length},W=${wireSize(ONE)}`), ONE);
  await srv.start(); // chowns the tree to nobody when running as root
  chmodSync(join(a, 'new', '1700000002.V801I2M1.mx'), 0o000);
});
after(async () => {
  await srv.stop();
});

async function login(user: string): Promise<Wire> {
  const w = await Wire.connect(srv.port);
  assert.match(await w.line(), /^\+OK/);
  assert.match(await w.cmd(`USER ${user}`), /^\+OK/);
  const pass = await w.cmd('PASS pw');
  assert.match(pass, /^\+OK/, pass);
  return w;
}

async function retr(w: Wire, n: number): Promise<{ status: string; body?: Buffer }> {
  const status = await w.cmd(`RETR ${n}`);
  if (!status.startsWith('+OK')) return { status };
  const raw = await w.body();
  return { status, body: raw.subarray(0, raw.length - 3) }; // without ".\r\n"
}

describe('Maildir faults (issue 13)', () => {
  test('defect 4: an unreadable message is listed, answers -ERR [SYS/TEMP], and the rest is served', async () => {
    const w = await login('alice');
    assert.match(await w.cmd('STAT'), /^\+OK 3 /);
    assert.match(await w.cmd('LIST'), /^\+OK/);
    assert.deepEqual(await w.lines(), [`1 ${wireSize(ONE)}`, `2 ${Buffer.byteLength(TWO)}`, `3 ${wireSize(THREE)}`]);
    const one = await retr(w, 1);
    assert.equal(one.status, `+OK ${wireSize(ONE)} octets`);
    assert.equal(one.body?.toString(), ONE.replaceAll('\n', '\r\n'));
    assert.match((await retr(w, 2)).status, /^-ERR \[SYS\/TEMP\]/);
    assert.equal((await retr(w, 3)).body?.toString(), THREE.replaceAll('\n', '\r\n'));
    assert.match(await w.cmd('QUIT'), /^\+OK/);
    assert.match(srv.logs(), /message file cannot be read; listed with its stored size/);
    assert.match(srv.logs(), /"msg":"message file cannot be read"/);
  });

  test('defect 16: a wrong ,W= is caught by RETR and TOP, the true count is sent, and later sessions list it', async () => {
    const w = await login('bob');
    assert.match(await w.cmd('LIST'), /^\+OK/);
    assert.deepEqual(await w.lines(), ['1 999999', '2 10', `3 ${wireSize(ONE)}`]); // no stat at login
    const liar = await retr(w, 1);
    assert.equal(liar.status, `+OK ${wireSize(LIAR)} octets`);
    assert.equal(liar.body?.length, wireSize(LIAR));
    // Claiming less than the file holds, on the large-message path.
    const big = await retr(w, 2);
    assert.equal(big.status, `+OK ${wireSize(BIG)} octets`);
    assert.equal(big.body?.length, wireSize(BIG));
    assert.equal(await w.cmd('LIST 1'), `+OK 1 ${wireSize(LIAR)}`);
    assert.match(await w.cmd('QUIT'), /^\+OK/);
    assert.match(srv.logs(), /listed message size was wrong/);

    const again = await login('bob');
    assert.match(await again.cmd('LIST'), /^\+OK/);
    assert.deepEqual(await again.lines(), [`1 ${wireSize(LIAR)}`, `2 ${wireSize(BIG)}`, `3 ${wireSize(ONE)}`]);
    // TOP checks too (nothing to correct any more here; a plausible size is left alone).
    assert.match(await again.cmd('TOP 3 0'), /^\+OK/);
    assert.equal((await again.body()).toString(), 'Subject: one\r\n\r\n.\r\n');
    assert.match(await again.cmd('QUIT'), /^\+OK/);
  });
});
