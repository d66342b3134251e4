/** `postern mailbox expire`: the EXPIRE cleanup for users who do not come back, under the maildrop lock. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { addUser } from '../../src/auth/passwd.ts';
import { runMailboxCommand } from '../../src/cli/mailbox.ts';
import { parseConfig } from '../../src/config/config.ts';
import { MaildirStore } from '../../src/storage/maildir/store.ts';

const DAY = 86_400_000;
let dir: string;
let store: MaildirStore;

function sink(): { stream: Writable; text: () => string } {
  let out = '';
  return {
    stream: new Writable({
      write(c, _e, cb) {
        out += c;
        cb();
      },
    }),
    text: () => out,
  };
}

async function run(args: string[]) {
  const out = sink();
  const err = sink();
  const config = parseConfig(
    '[storage]\nroot = "mail"\n[auth]\nusers_file = "users"\n[policy]\nexpire = "3"\n',
    join(dir, 'postern.toml'),
  );
  const code = await runMailboxCommand(args, { stdout: out.stream, stderr: err.stream, config: () => config });
  return { code, out: out.text(), err: err.text() };
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postern-expire-'));
  store = new MaildirStore({ root: join(dir, 'mail') });
  await addUser(join(dir, 'users'), 'alice', 'pw');
  await addUser(join(dir, 'users'), 'bob', 'pw');
});
after(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

test('deletes exactly the messages past their retention since first retrieval, and records the rest', async () => {
  const ids: string[] = [];
  for (const n of [1, 2, 3]) {
    ids.push((await store.deliver('alice', Readable.from([Buffer.from(`Subject: ${n}\r\n\r\n${n}\r\n`)]))).id);
  }
  const drop = await store.openMaildrop('alice');
  // 1: retrieved 5 days ago (past 3 days); 2: retrieved 1 day ago; 3: never retrieved.
  await drop.writeState({ lastLogin: 7, retrieved: { [ids[0]]: Date.now() - 5 * DAY, [ids[1]]: Date.now() - DAY } });
  await drop.release();

  const r = await run(['expire', 'alice']);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, 'alice: 1 expired, 2 left\n');
  const after = await store.openMaildrop('alice');
  assert.deepEqual(
    after.messages.map((m) => m.id),
    [ids[1], ids[2]],
  );
  const state = await after.readState();
  assert.equal(state.lastLogin, 7);
  assert.deepEqual(Object.keys(state.retrieved ?? {}), [ids[1]]);
  // While a session holds the mailbox, expire leaves it alone and says so.
  const busy = await run(['expire', '--all']);
  assert.equal(busy.code, 75);
  assert.match(busy.err, /alice: mailbox in use, skipped/);
  assert.match(busy.out, /bob: 0 expired, 0 left/);
  await after.release();
  assert.equal((await store.stats('alice')).messages, 2);
});

test('an unknown user is exit 67', async () => {
  const r = await run(['expire', 'nobody']);
  assert.equal(r.code, 67);
});
