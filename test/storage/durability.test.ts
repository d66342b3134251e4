/**
 * Durability, pinned by the order of system calls (issue 13: "removing the fsync from the directory sync after
 * QUIT's deletions passes every test"). A spy on the file-system layer (test/helpers/fsSpy.ts) records what
 * the code does, and each test checks that the acknowledgement comes only after what makes it true:
 *
 * - QUIT: unlink of each deleted message, fsync of its directory, then `+OK`;
 * - delivery: the message file fsynced, linked into new/, new/ fsynced, then `250` (LMTP);
 * - the users file: a temporary file written and fsynced, renamed over the file, the directory fsynced;
 * - `postern fetch`: the copy fsynced and renamed into new/, new/ fsynced, the journal's record appended and
 *   fsynced, and only then `DELE` sent to the server.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { addUser } from '../../src/auth/passwd-edit.ts';
import { parseAccounts } from '../../src/fetch/config.ts';
import { fetchAccount } from '../../src/fetch/fetcher.ts';
import { QuietProgress } from '../../src/fetch/progress.ts';
import { MaildirStore } from '../../src/storage/maildir/store.ts';
import { replies, startTestLmtp, swaks } from '../delivery/helpers.ts';
import { type FsEvent, type FsSpy, installFsSpy } from '../helpers/fsSpy.ts';
import { makeServer, startTestServer, testCert } from '../helpers/server.ts';
import { Wire } from '../helpers/wire.ts';

const hasSwaks = (await swaks(['--version'])).code === 0;

/** Asserts that the events matching `steps` occur in this order (each after the previous), with a dump on failure. */
function assertOrder(spy: FsSpy, steps: [string, (e: FsEvent) => boolean][]): number[] {
  const at: number[] = [];
  let from = 0;
  for (const [what, pred] of steps) {
    const i = spy.find(pred, from);
    const dump = spy.events.map((e, k) => `${k} ${e.op} ${e.path.slice(0, 100)}${e.to ? ` → ${e.to}` : ''}`);
    assert.ok(
      i >= 0,
      `"${what}" did not happen after "${at.length ? steps[at.length - 1][0] : 'the start'}":\n${dump.join('\n')}`,
    );
    at.push(i);
    from = i + 1;
  }
  return at;
}

describe('durability: the order of system calls before each acknowledgement', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'postern-durable-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('QUIT: unlink, fsync of the directory, then +OK', async () => {
    const store = new MaildirStore({ root: join(dir, 'quit') });
    for (const n of [1, 2]) await store.deliver('alice', Readable.from([Buffer.from(`Subject: ${n}\r\n\r\nx\r\n`)]));
    const server = await makeServer({ store });
    const [{ port }] = await server.listen([{ address: '127.0.0.1', port: 0, tls: 'starttls' }]);
    const md = store.maildirPath('alice');
    const w = await Wire.connect(port);
    let spy: FsSpy | undefined;
    try {
      await w.line();
      await w.cmd('USER alice');
      assert.match(await w.cmd('PASS wonderland'), /^\+OK/);
      assert.match(await w.cmd('UIDL 1'), /^\+OK/);
      assert.match(await w.cmd('DELE 1'), /^\+OK/);
      spy = await installFsSpy();
      assert.match(await w.cmd('QUIT'), /^\+OK/);
      spy.restore();
      assertOrder(spy, [
        ['unlink of the deleted message', (e) => e.op === 'unlink' && dirname(e.path) === join(md, 'new')],
        ['fsync of new/', (e) => e.op === 'fsync' && e.path === join(md, 'new')],
        ['+OK to QUIT', (e) => e.op === 'send' && e.path.startsWith('+OK')],
      ]);
    } finally {
      spy?.restore();
      w.destroy();
      await server.close();
      await store.close();
    }
  });

  test('delivery: file fsync, link into new/, fsync of new/, then 250', {
    skip: !hasSwaks && 'swaks is not installed',
  }, async () => {
    const t = await startTestLmtp({ users: { alice: [] } });
    let spy: FsSpy | undefined;
    try {
      // A first delivery creates the Maildir; the one measured is an ordinary one.
      assert.equal((await swaks(['--server', '127.0.0.1', '--port', String(t.port), '--to', 'alice@x'])).code, 0);
      spy = await installFsSpy();
      const r = await swaks(['--server', '127.0.0.1', '--port', String(t.port), '--to', 'alice@x']);
      spy.restore();
      assert.ok(
        replies(r.out).some((l) => l.startsWith('250 2.6.0')),
        r.out,
      );
      const md = t.store.maildirPath('alice');
      const [opened] = assertOrder(spy, [
        ['open in tmp/', (e) => e.op === 'open' && dirname(e.path) === join(md, 'tmp')],
      ]);
      const tmpFile = spy.events[opened].path;
      assertOrder(spy, [
        ['fsync of the message file', (e) => e.op === 'fsync' && e.path === tmpFile],
        ['link (or rename) into new/', (e) => (e.op === 'link' || e.op === 'rename') && e.path === tmpFile],
        ['fsync of new/', (e) => e.op === 'fsync' && e.path === join(md, 'new')],
        ['250 to the client', (e) => e.op === 'send' && e.path.startsWith('250 2.6.0')],
      ]);
    } finally {
      spy?.restore();
      await t.close();
    }
  });

  test('the users file: temporary written and fsynced, renamed over, directory fsynced', async () => {
    const users = join(dir, 'users');
    await writeFile(users, 'bob:{PLAIN}pw::::::\n');
    const spy = await installFsSpy();
    try {
      await addUser(users, 'carol', 'a long enough password');
    } finally {
      spy.restore();
    }
    assert.match(await readFile(users, 'utf8'), /^carol:/m);
    const [renamed] = assertOrder(spy, [['rename over the users file', (e) => e.op === 'rename' && e.to === users]]);
    const tmp = spy.events[renamed].path;
    assert.equal(dirname(tmp), dir, 'the temporary is in the same directory (an atomic rename)');
    assertOrder(spy, [
      ['fsync of the temporary', (e) => e.op === 'fsync' && e.path === tmp],
      ['the rename', (e) => e.op === 'rename' && e.path === tmp && e.to === users],
      ['fsync of the directory', (e) => e.op === 'fsync' && e.path === dir],
    ]);
  });

  test('postern fetch: the copy and the journal record are durable before DELE is sent', async () => {
    const srv = await startTestServer({ users: { u1: { password: 'pw1' } } });
    srv.store.add('u1', 'Subject: fetched\r\n\r\nbody\r\n');
    const work = join(dir, 'fetch');
    const caFile = join(dir, 'ca.pem');
    await writeFile(caFile, (await testCert()).cert);
    const accounts = join(dir, 'fetch.toml');
    await writeFile(
      accounts,
      `state_dir = "${work}/state"\n[[account]]\nname = "t"\nhost = "127.0.0.1"\nport = ${srv.tlsPort}\n` +
        `tls = "implicit"\nuser = "u1"\npassword_env = "X"\nca_file = "${caFile}"\nmaildir = "${work}/Maildir"\n` +
        'keep = false\n',
    );
    const [account] = parseAccounts(await readFile(accounts, 'utf8'), accounts);
    const spy = await installFsSpy();
    try {
      const r = await fetchAccount(account, {
        dryRun: false,
        progress: new QuietProgress({ write: () => true }),
        password: async () => 'pw1',
      });
      assert.deepEqual([r.fetched, r.deleted, r.error], [1, 1, undefined]);
    } finally {
      spy.restore();
      await srv.close();
    }
    const md = join(work, 'Maildir');
    const [opened] = assertOrder(spy, [
      ['open in tmp/', (e) => e.op === 'open' && dirname(e.path) === join(md, 'tmp')],
    ]);
    const tmpFile = spy.events[opened].path;
    const journal = (e: FsEvent) => e.path.startsWith(join(work, 'state')) && e.path.endsWith('.journal');
    assertOrder(spy, [
      ['fsync of the copy', (e) => e.op === 'fsync' && e.path === tmpFile],
      ['rename into new/', (e) => (e.op === 'rename' || e.op === 'link') && e.path === tmpFile],
      ['fsync of new/', (e) => e.op === 'fsync' && e.path === join(md, 'new')],
      ['the journal record appended', (e) => e.op === 'append' && journal(e)],
      ['the journal fsynced', (e) => e.op === 'fsync' && journal(e)],
      ['DELE sent', (e) => e.op === 'send' && e.path.startsWith('DELE ')],
    ]);
  });
});
