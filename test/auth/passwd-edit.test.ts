import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  addUser,
  deleteUser,
  listUsers,
  PasswdFileAuthenticator,
  PasswdFileError,
  setPassword,
} from '../../src/auth/passwd.ts';
import { parsePasswd } from '../../src/auth/passwd-format.ts';

const SHA512 = '$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1';
const ORIGINAL = [
  '# users of example.org',
  '',
  'alice:{PLAIN}secret',
  '# bob moved here in 2024',
  `bob:{SHA512-CRYPT}${SHA512}:1000:1000:Bob B:/home/bob:/bin/false:userdb_mail=maildir:~/Maildir quota_rule=*:storage=1G`,
  'carol:{PLAIN}carolpw::::::mailbox=box-c',
  '',
].join('\n');

let dir: string;
let n = 0;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postern-passwd-edit-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(content?: string, mode = 0o600): Promise<string> {
  const path = join(dir, `users-${++n}`);
  if (content !== undefined) {
    await writeFile(path, content);
    await chmod(path, mode);
  }
  return path;
}

const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;
const code = (c: string) => (err: unknown) => err instanceof PasswdFileError && err.code === c;

describe('passwd file changes', () => {
  it('add, passwd, del and list round-trip, keeping comments and other lines byte for byte', async () => {
    const path = await file(ORIGINAL);
    await addUser(path, 'dave', 'davepw');
    let text = await readFile(path, 'utf8');
    assert.ok(text.startsWith(ORIGINAL), 'existing lines untouched');
    const daveLine = text.slice(ORIGINAL.length);
    assert.match(daveLine, /^dave:\{ARGON2ID\}\$argon2id\$v=19\$[^:]+::::::scram_sha256=10000,[^ ]+\n$/);
    for (const p of ['m=19456', 't=2', 'p=1']) assert.ok(daveLine.includes(p), `${daveLine} has ${p}`);

    await setPassword(path, 'bob', 'newbobpw');
    text = await readFile(path, 'utf8');
    const bobLine = text.split('\n')[4];
    assert.match(
      bobLine,
      /^bob:\{ARGON2ID\}\$argon2id\$[^:]+:1000:1000:Bob B:\/home\/bob:\/bin\/false:userdb_mail=maildir:~\/Maildir quota_rule=\*:storage=1G scram_sha256=[^ ]+$/,
    );

    await deleteUser(path, 'alice');
    text = await readFile(path, 'utf8');
    const lines = text.split('\n');
    assert.deepEqual(lines.slice(0, 2), ['# users of example.org', '']);
    assert.equal(lines[2], '# bob moved here in 2024');
    assert.equal(lines[4], 'carol:{PLAIN}carolpw::::::mailbox=box-c');

    const users = await listUsers(path);
    assert.deepEqual(
      users.map((u) => [u.name, u.scheme, u.mailboxId, u.hasSharedSecret, u.problem]),
      [
        ['bob', 'ARGON2ID', 'bob', false, null],
        ['carol', 'PLAIN', 'box-c', true, null],
        ['dave', 'ARGON2ID', 'dave', false, null],
      ],
    );
    assert.ok(!JSON.stringify(users).includes('argon2id$'), 'no hash in the listing');

    const auth = await PasswdFileAuthenticator.load(path);
    assert.deepEqual(await auth.verifyPassword('bob', 'newbobpw'), { user: 'bob', mailboxId: 'bob' });
    assert.equal(await auth.verifyPassword('bob', 'secret'), null);
    assert.deepEqual(await auth.verifyPassword('dave', 'davepw'), { user: 'dave', mailboxId: 'dave' });
    assert.equal(await auth.lookup('alice'), null);
  });

  it('creates a missing file with mode 0600 and keeps 0600 across rewrites', async () => {
    const path = await file();
    await addUser(path, 'alice', 'pw1');
    assert.equal(await modeOf(path), 0o600);
    await setPassword(path, 'alice', 'pw2');
    assert.equal(await modeOf(path), 0o600);
    await addUser(path, 'bob', 'pw3');
    await deleteUser(path, 'bob');
    assert.equal(await modeOf(path), 0o600);
  });

  it('keeps group read (a Dovecot-style 0640 file) but never world access', async () => {
    const p640 = await file('alice:{PLAIN}x\n', 0o640);
    await deleteUser(p640, 'alice');
    assert.equal(await modeOf(p640), 0o640);
    const p644 = await file('alice:{PLAIN}x\n', 0o644);
    await deleteUser(p644, 'alice');
    assert.equal(await modeOf(p644), 0o640);
  });

  it('leaves neither a lock nor a temporary file behind', async () => {
    const path = await file(ORIGINAL);
    await addUser(path, 'dave', 'pw');
    await assert.rejects(addUser(path, 'dave', 'pw'), code('USER_EXISTS'));
    await deleteUser(path, 'dave');
    const base = path.slice(dir.length + 1);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.includes(base)),
      [base],
    );
  });

  it('refuses bad changes with stable codes', async () => {
    const path = await file(ORIGINAL);
    await assert.rejects(addUser(path, 'alice', 'pw'), code('USER_EXISTS'));
    await assert.rejects(addUser(path, 'a:b', 'pw'), code('INVALID_NAME'));
    await assert.rejects(addUser(path, '', 'pw'), code('INVALID_NAME'));
    await assert.rejects(addUser(path, '#evil', 'pw'), code('INVALID_NAME')); // would be a comment line
    await assert.rejects(addUser(path, 'zed', ''), code('INVALID_PASSWORD'));
    await assert.rejects(addUser(path, 'zed', 'pw\nx'), code('INVALID_PASSWORD'));
    await assert.rejects(addUser(path, 'zed', 'x'.repeat(1025)), code('INVALID_PASSWORD'));
    await assert.rejects(addUser(path, 'zed', 'pw', { apopSecret: '' }), /APOP secret is empty/);
    await assert.rejects(setPassword(path, 'nobody', 'pw'), code('NO_SUCH_USER'));
    await assert.rejects(deleteUser(path, 'nobody'), code('NO_SUCH_USER'));
    assert.equal(await readFile(path, 'utf8'), ORIGINAL);
  });

  it('stores an APOP secret on request, and never leaves the old password valid through it', async () => {
    const path = await file(ORIGINAL);
    await addUser(path, 'dave', 'davepw', { apopSecret: 'davepw' });
    assert.match(
      await readFile(path, 'utf8'),
      /\ndave:\{ARGON2ID\}[^:]+::::::scram_sha256=[^ ]+ apop_secret=ZGF2ZXB3\n$/,
    );
    const secretOf = async (name: string): Promise<string | null> =>
      parsePasswd(await readFile(path, 'utf8')).users.get(name)?.sharedSecret ?? null;

    await setPassword(path, 'dave', 'dave2'); // had a secret: it follows the password
    assert.equal(await secretOf('dave'), 'dave2');
    await setPassword(path, 'alice', 'alice2'); // {PLAIN} user: same rule
    assert.equal(await secretOf('alice'), 'alice2');
    await setPassword(path, 'bob', 'bob2'); // had none: gets none
    assert.equal(await secretOf('bob'), null);
    await setPassword(path, 'bob', 'bob3', { apopSecret: 'bob apop' });
    assert.equal(await secretOf('bob'), 'bob apop');
    assert.match(
      (await readFile(path, 'utf8')).split('\n')[4],
      /:userdb_mail=maildir:~\/Maildir quota_rule=\*:storage=1G scram_sha256=[^ ]+ apop_secret=/,
    );
    await setPassword(path, 'bob', 'bob4', { apopSecret: null });
    assert.equal(await secretOf('bob'), null);
    assert.match(
      (await readFile(path, 'utf8')).split('\n')[4],
      /:userdb_mail=maildir:~\/Maildir quota_rule=\*:storage=1G scram_sha256=[^ ]+$/,
    );
  });

  it('deletes every line of a duplicated user', async () => {
    const path = await file('# x\nalice:{PLAIN}a\nbob:{PLAIN}b\nalice:{PLAIN}c\n');
    await deleteUser(path, 'alice');
    assert.equal(await readFile(path, 'utf8'), '# x\nbob:{PLAIN}b\n');
  });

  it('lists nothing for a missing file', async () => {
    assert.deepEqual(await listUsers(join(dir, 'missing')), []);
  });

  it('loses no user when many additions run at once in one process', async () => {
    const path = await file('# concurrent\n');
    const names = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];
    await Promise.all(names.map((name) => addUser(path, name, `${name}pw`)));
    assert.deepEqual((await listUsers(path)).map((u) => u.name).sort(), names);
  });

  it('loses no user when two processes add users at the same time', async () => {
    const path = await file('# two writers\n');
    const module = fileURLToPath(new URL('../../src/auth/passwd.ts', import.meta.url));
    const run = (prefix: string): Promise<void> =>
      new Promise((resolve, reject) => {
        const script = `
          import { addUser } from ${JSON.stringify(module)};
          for (let i = 0; i < 4; i++) await addUser(${JSON.stringify(path)}, '${prefix}' + i, 'pw' + i);
        `;
        const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (d) => {
          stderr += d;
        });
        child.on('error', reject);
        child.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`child ${prefix} exited ${c}: ${stderr}`))));
      });
    await Promise.all([run('a'), run('b')]);
    assert.deepEqual((await listUsers(path)).map((u) => u.name).sort(), [
      'a0',
      'a1',
      'a2',
      'a3',
      'b0',
      'b1',
      'b2',
      'b3',
    ]);
    assert.equal((await readFile(path, 'utf8')).split('\n')[0], '# two writers');
  });

  it('waits for a live lock and proceeds once it is released', async () => {
    const path = await file(ORIGINAL);
    await writeFile(`${path}.lock`, `${process.pid} ${hostname()} test\n`);
    let done = false;
    const pending = deleteUser(path, 'alice').then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(done, false);
    await rm(`${path}.lock`);
    await pending;
    assert.equal(
      (await listUsers(path)).some((u) => u.name === 'alice'),
      false,
    );
  });

  it('takes over a lock left by a process that died', async () => {
    const path = await file(ORIGINAL);
    const dead = spawn(process.execPath, ['-e', '']);
    const pid = dead.pid!;
    await new Promise((r) => dead.on('exit', r));
    await writeFile(`${path}.lock`, `${pid} ${hostname()} stale\n`);
    await deleteUser(path, 'alice');
    assert.equal(
      (await listUsers(path)).some((u) => u.name === 'alice'),
      false,
    );
    await assert.rejects(stat(`${path}.lock`), /ENOENT/);
  });
});
