import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { PasswdFileAuthenticator } from '../../src/auth/passwd.ts';

test('policy extra fields reach the principal; secrets and other fields do not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'postern-policy-'));
  try {
    const file = join(dir, 'users');
    writeFileSync(
      file,
      'ann:{PLAIN}pw::::::login_delay=900 expire=30 quota_bytes=1000 apop_secret=cHc= userdb_x=1\nben:{PLAIN}pw::::::\n',
    );
    const auth = await PasswdFileAuthenticator.load(file, { autoReload: false });
    const ann = await auth.verifyPassword('ann', 'pw');
    assert.deepEqual(ann?.settings, { loginDelaySeconds: 900, expireDays: 30, quota: { bytes: 1000 } });
    assert.equal((await auth.lookup('ben'))?.settings, undefined);
    assert.equal(auth.hasPolicyOverrides(), true);
    writeFileSync(file, 'ben:{PLAIN}pw::::::quota_bytes=5\n');
    await auth.reload();
    assert.equal(auth.hasPolicyOverrides(), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a setting that cannot be used is reported once, with its line, and ignored: the default applies', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'postern-policy-'));
  try {
    const file = join(dir, 'users');
    writeFileSync(
      file,
      'ann:{PLAIN}pw::::::expire=soon quota_messages=12\nbob:{PLAIN}pw::::::login_delay=-5 expire=NEVER\n',
    );
    const warnings: { fields: Record<string, unknown>; msg: string }[] = [];
    const logger = { warn: (fields: Record<string, unknown>, msg: string) => warnings.push({ fields, msg }) };
    const auth = await PasswdFileAuthenticator.load(file, { autoReload: false, logger });
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
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
