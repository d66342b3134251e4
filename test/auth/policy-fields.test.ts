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
    assert.deepEqual(ann?.settings, { login_delay: '900', expire: '30', quota_bytes: '1000' });
    assert.equal((await auth.lookup('ben'))?.settings, undefined);
    assert.equal(auth.hasPolicyOverrides(), true);
    writeFileSync(file, 'ben:{PLAIN}pw::::::quota_bytes=5\n');
    await auth.reload();
    assert.equal(auth.hasPolicyOverrides(), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
