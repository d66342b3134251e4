/**
 * `postern check-config` reads the users file as the server does and reports the same skipped lines (issue 13
 * #15: a non-UTF-8 byte stopped the server while check-config said OK). Lines are named by number, never shown.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { PasswdFileAuthenticator } from '../../src/auth/passwd.ts';
import { main } from '../../src/cli/main.ts';
import { withLatin1Line } from '../helpers/users-file.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postern-check-config-'));
});
after(() => rm(dir, { recursive: true, force: true }));

async function checkConfig(config: string): Promise<{ code: number; out: string }> {
  const chunks: string[] = [];
  const sink = new Writable({
    write(c, _e, cb) {
      chunks.push(String(c));
      cb();
    },
  });
  const code = await main(['check-config', '--config', config], {
    stdin: new PassThrough(),
    stdout: sink,
    stderr: sink,
  });
  return { code, out: chunks.join('') };
}

test('check-config reports the users-file lines the server skips, by number, never their text', async () => {
  const users = join(dir, 'users');
  await writeFile(users, withLatin1Line(['alice:{PLAIN}secret', 'bad name:{PLAIN}hunter3', 'bob:{PLAIN}pw'], 2));
  const config = join(dir, 'postern.toml');
  await writeFile(config, `[auth]\nusers_file = "${users}"\n`);
  const { code, out } = await checkConfig(config);
  assert.equal(code, 0);
  assert.match(out, /^config OK\n/);
  assert.match(out, /users {3}\S+users \(2 users; 2 lines to check, below\)/);
  assert.match(out, /warning \S+users:2: line is not valid UTF-8; line ignored\n/);
  assert.match(out, /warning \S+users:3: user name contains/);
  assert.ok(!out.includes('hunter'), out);
  // The server reads the same file, skips the same lines, and serves the rest.
  const auth = await PasswdFileAuthenticator.load(users);
  assert.deepEqual(
    auth.issues.map((i) => i.lineNo),
    [2, 3],
  );
  assert.deepEqual(await auth.verifyPassword('bob', 'pw'), { user: 'bob', mailboxId: 'bob' });
});

test('check-config says when the users file is missing, and fails as serve would (issue 8)', async () => {
  const config = join(dir, 'missing.toml');
  await writeFile(config, `[auth]\nusers_file = "${join(dir, 'nope')}"\n`);
  const { code, out } = await checkConfig(config);
  assert.equal(code, 78);
  assert.match(out, /problem auth\.users_file = "\S+nope": does not exist/);
  assert.match(out, /users {3}\S+nope \(missing: no user can log in\)/);
});
