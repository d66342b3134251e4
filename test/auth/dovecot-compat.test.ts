/** A user file written by Postern can move back to Dovecot: its argon2id hashes verify with doveadm. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { hashPassword } from '../../src/auth/schemes.ts';
import { skipUnlessCi } from '../helpers/peers.ts';

const DOVEADM = ['/usr/bin/doveadm', '/usr/sbin/doveadm'].find((p) => existsSync(p));

test('doveadm pw -t verifies the hashes postern writes', {
  skip: skipUnlessCi(!DOVEADM && 'Dovecot not installed'),
}, async () => {
  const hash = await hashPassword('pässword with spaces');
  assert.match(hash, /^\{ARGON2ID\}\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$/);
  const ok = spawnSync(DOVEADM!, ['pw', '-t', hash, '-p', 'pässword with spaces'], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.match(ok.stdout + ok.stderr, /\(verified\)/);
  const bad = spawnSync(DOVEADM!, ['pw', '-t', hash, '-p', 'wrong'], { encoding: 'utf8', timeout: 20_000 });
  assert.doesNotMatch(bad.stdout + bad.stderr, /\(verified\)/);
});
