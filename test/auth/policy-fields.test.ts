import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type AuthLogger, PasswdFileAuthenticator } from '../../src/auth/passwd.ts';
import { removeTempDir, tempDir } from '../helpers/tmp.ts';

const dir = tempDir('policy');
after(() => removeTempDir(dir));
let files = 0;

/** A users file with `text`, and the authenticator reading it. */
async function usersFile(text: string, logger?: AuthLogger) {
  const file = join(dir, `users-${++files}`);
  writeFileSync(file, text);
  return { file, auth: await PasswdFileAuthenticator.load(file, { autoReload: false, logger }) };
}

test('policy extra fields reach the principal, typed; secrets and other fields do not', async () => {
  const { file, auth } = await usersFile(
    'ann:{PLAIN}pw::::::login_delay=900 expire=30 quota_bytes=1000 apop_secret=cHc= userdb_x=1\nben:{PLAIN}pw::::::\n',
  );
  const ann = await auth.verifyPassword('ann', 'pw');
  assert.deepEqual(ann?.settings, { loginDelaySeconds: 900, expireDays: 30, quota: { bytes: 1000 } });
  assert.equal((await auth.lookup('ben'))?.settings, undefined);
  assert.equal(auth.hasPolicyOverrides(), true);
  writeFileSync(file, 'ben:{PLAIN}pw::::::quota_bytes=5\n');
  await auth.reload();
  assert.equal(auth.hasPolicyOverrides(), false);
});

test('a setting that cannot be used is reported once, with its line, and ignored: the default applies', async () => {
  const warnings: { fields: Record<string, unknown>; msg: string }[] = [];
  const { auth } = await usersFile(
    'ann:{PLAIN}pw::::::expire=soon quota_messages=12\nbob:{PLAIN}pw::::::login_delay=-5 expire=NEVER\n',
    { warn: (fields, msg) => warnings.push({ fields, msg }) },
  );
  assert.deepEqual(
    warnings.map((w) => [w.fields.lineNo, w.fields.user, w.msg]),
    [
      [1, 'ann', 'expire=soon is not "never" or a whole number of days; ignored, the default applies'],
      [2, 'bob', 'login_delay=-5 is not a whole number of seconds; ignored, the default applies'],
    ],
  );
  assert.deepEqual((await auth.verifyPassword('ann', 'pw'))?.settings, { quota: { messages: 12 } });
  assert.deepEqual((await auth.lookup('bob'))?.settings, { expireDays: 'never' });
  // Logins still work, and the warnings are not repeated per login.
  assert.equal(warnings.length, 2);
  assert.equal(auth.hasPolicyOverrides(), true);
});
