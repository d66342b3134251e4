import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { PasswdFileAuthenticator } from '../../src/auth/passwd.ts';
import { runUserCommand } from '../../src/cli/user.ts';
import { textSink } from '../helpers/text-sink.ts';

let dir: string;
let n = 0;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postern-user-cli-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function run(usersFile: string, argv: string[], input = ''): Promise<Result> {
  const stdin = new PassThrough();
  stdin.end(input);
  const stdout = textSink();
  const stderr = textSink();
  const code = await runUserCommand(argv, { usersFile, stdin, stdout, stderr });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

async function freshFile(content?: string): Promise<string> {
  const path = join(dir, `users-${++n}`);
  if (content !== undefined) await writeFile(path, content, { mode: 0o600 });
  return path;
}

describe('postern user', () => {
  it('adds, lists, changes and deletes users with the password on stdin', async () => {
    const file = await freshFile('# managed by postern\n');
    let r = await run(file, ['add', 'alice'], 'hunter2-alice\n');
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, "added user 'alice'\n", '']);
    r = await run(file, ['add', 'bob', '--apop'], 'bob-secret\r\n');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /added user 'bob' with an APOP\/CRAM-MD5 shared secret/);

    r = await run(file, ['list']);
    assert.deepEqual([r.code, r.stdout], [0, 'alice\nbob\n']);
    r = await run(file, ['list', '--long']);
    assert.equal(r.code, 0);
    assert.match(
      r.stdout,
      /^NAME +SCHEME +APOP +MAILBOX +STATUS\nalice +ARGON2ID +no +alice +ok\nbob +ARGON2ID +yes +bob +ok\n$/,
    );

    let auth = await PasswdFileAuthenticator.load(file);
    assert.deepEqual(await auth.verifyPassword('alice', 'hunter2-alice'), { user: 'alice', mailboxId: 'alice' });
    assert.equal(await auth.sharedSecret('bob'), 'bob-secret');

    r = await run(file, ['passwd', 'alice'], 'new-alice\n');
    assert.deepEqual([r.code, r.stdout], [0, "changed the password of 'alice'\n"]);
    r = await run(file, ['passwd', 'bob', '--no-apop'], 'new-bob\n');
    assert.equal(r.code, 0);
    auth = await PasswdFileAuthenticator.load(file);
    assert.equal(await auth.verifyPassword('alice', 'hunter2-alice'), null);
    assert.deepEqual(await auth.verifyPassword('alice', 'new-alice'), { user: 'alice', mailboxId: 'alice' });
    assert.equal(await auth.sharedSecret('bob'), null);

    r = await run(file, ['del', 'alice']);
    assert.deepEqual([r.code, r.stdout], [0, "deleted user 'alice' (the mailbox was not touched)\n"]);
    r = await run(file, ['list']);
    assert.equal(r.stdout, 'bob\n');
    assert.match(await readFile(file, 'utf8'), /^# managed by postern\nbob:/);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
  });

  it('creates the users file on the first add', async () => {
    const file = await freshFile();
    const r = await run(file, ['add', 'josé'], 'pw\n');
    assert.equal(r.code, 0);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await run(file, ['list'])).stdout, 'josé\n');
  });

  it('never prints the password', async () => {
    const file = await freshFile();
    const outputs: Result[] = [];
    outputs.push(await run(file, ['add', 'alice', '--apop'], 'Sup3r-S3cret\n'));
    outputs.push(await run(file, ['add', 'alice'], 'Sup3r-S3cret\n'));
    outputs.push(await run(file, ['passwd', 'alice', '--apop'], 'Sup3r-S3cret\n'));
    outputs.push(await run(file, ['list', '--long']));
    for (const r of outputs) {
      assert.ok(!`${r.stdout}${r.stderr}`.includes('Sup3r-S3cret'));
      assert.ok(!`${r.stdout}${r.stderr}`.includes('argon2'));
    }
  });

  it('fails with exit code 1 and a clear message', async () => {
    const file = await freshFile('alice:{PLAIN}x\n');
    const cases: Array<[string[], string, RegExp]> = [
      [['add', 'alice'], 'pw\n', /^postern user add: user 'alice' already exists\n$/],
      [['passwd', 'nobody'], 'pw\n', /^postern user passwd: no user 'nobody'\n$/],
      [['del', 'nobody'], '', /^postern user del: no user 'nobody'\n$/],
      [['add', 'bad:name'], 'pw\n', /^postern user add: invalid user name: .*':'/],
      // Issue 13 #12: the line would read as a comment; the user could never log in, be listed or deleted.
      [['add', '#evil'], 'pw\n', /^postern user add: invalid user name: .*'#'.*comment/],
      [['passwd', '#evil'], 'pw\n', /^postern user passwd: invalid user name: .*'#'/],
      [['del', '#evil'], '', /^postern user del: invalid user name: .*'#'/],
      [['add', 'bob'], '\n', /^postern user add: empty password\n$/],
      [['add', 'bob'], '', /^postern user add: empty password\n$/],
      [['add', 'bob'], `${'x'.repeat(2000)}\n`, /longer than 1024 bytes/],
    ];
    for (const [argv, input, message] of cases) {
      const r = await run(file, argv, input);
      assert.equal(r.code, 1, argv.join(' '));
      assert.match(r.stderr, message, argv.join(' '));
      assert.equal(r.stdout, '');
    }
    assert.equal(await readFile(file, 'utf8'), 'alice:{PLAIN}x\n');
  });

  it('reports a file it cannot write', async () => {
    const r = await run(join(dir, 'no-such-dir', 'users'), ['add', 'alice'], 'pw\n');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^postern user add: cannot update .*users: ENOENT/);
  });

  it('answers usage errors with exit code 64 and the usage text', async () => {
    const file = await freshFile();
    const cases: Array<[string[], RegExp]> = [
      [[], /^Usage: postern user <command>/],
      [['frob'], /unknown command 'frob'/],
      [['add'], /expected exactly one user NAME[\s\S]*Usage: postern user add/],
      [['add', 'a', 'b'], /expected exactly one user NAME/],
      [['add', 'a', '--bogus'], /Unknown option '--bogus'/],
      [['del', 'a', '--apop'], /Unknown option '--apop'/],
      [['passwd', 'a', '--apop', '--no-apop'], /exclude each other/],
      [['list', 'extra'], /takes no arguments/],
    ];
    for (const [argv, message] of cases) {
      const r = await run(file, argv);
      assert.equal(r.code, 64, argv.join(' '));
      assert.match(r.stderr, message, argv.join(' '));
    }
  });

  it('prints help for the group and each command on stdout', async () => {
    const file = await freshFile();
    const top = await run(file, ['--help']);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /add NAME \[--apop\][\s\S]*passwd NAME[\s\S]*del NAME[\s\S]*list/);
    for (const sub of ['add', 'passwd', 'del', 'list']) {
      const r = await run(file, [sub, '--help']);
      assert.equal(r.code, 0, sub);
      assert.match(r.stdout, new RegExp(`^Usage: postern user ${sub}`));
      assert.equal(r.stderr, '');
    }
    const add = await run(file, ['add', '-h']);
    assert.match(add.stdout, /recoverable form/);
  });
});
