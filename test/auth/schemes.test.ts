import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as argon2 from 'argon2';
import bcrypt from 'bcryptjs';
import {
  ARGON2_PARAMS,
  hashPassword,
  parseStoredPassword,
  plaintextOf,
  verifyStoredPassword,
} from '../../src/auth/schemes.ts';
import { MAX_SHA_CRYPT_ROUNDS } from '../../src/auth/sha-crypt.ts';

// `openssl passwd -6 -salt saltsalt secret` and `openssl passwd -5 -salt saltsalt secret`.
const SHA512 = '$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1';
const SHA256 = '$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA';
// glibc crypt("secret", "$6$rounds=10000$saltsalt").
const SHA512_ROUNDS =
  '$6$rounds=10000$saltsalt$WowrPBpEDVlCoruBosYlrZycTCx3//TyDHYqEhX9DUHHt0XTztUqzQDDUuvUGRA8aUe9p55hcAxeGcu58sm3u.';
// jBCrypt's published test vector for "abc".
const BCRYPT_ABC = '$2a$06$If6bvum7DFjUnE9p2uDeDu0YHzrHM6tf.iqN8.yx.jNN1ILEf7h0i';

async function check(field: string, right: string, wrong = 'wrong'): Promise<void> {
  const stored = parseStoredPassword(field);
  assert.equal(stored.problem, null, `${field}: ${stored.problem}`);
  assert.equal(await verifyStoredPassword(stored, right), true, `${field} should accept the right password`);
  assert.equal(await verifyStoredPassword(stored, wrong), false, `${field} should refuse a wrong password`);
}

describe('password schemes', () => {
  it('writes {ARGON2ID} with the OWASP parameters and verifies it', async () => {
    const field = await hashPassword('correct horse');
    assert.match(field, /^\{ARGON2ID\}\$argon2id\$v=19\$/);
    for (const p of ['m=19456', 't=2', 'p=1']) assert.ok(field.includes(p), `${field} has ${p}`);
    await check(field, 'correct horse', 'correct horse ');
  });

  it('verifies stronger argon2id parameters, in the m,t,p order Dovecot writes', async () => {
    const h = await argon2.hash('secret', { type: argon2.argon2id, memoryCost: 32768, timeCost: 3, parallelism: 2 });
    const dovecotOrder = h.replace(/m=(\d+),p=(\d+),t=(\d+)/, 'm=$1,t=$3,p=$2');
    assert.ok(dovecotOrder.includes('m=32768,t=3,p=2'), dovecotOrder);
    await check(`{ARGON2ID}${dovecotOrder}`, 'secret');
  });

  it('verifies {ARGON2I}', async () => {
    const h = await argon2.hash('secret', { ...ARGON2_PARAMS, type: argon2.argon2i });
    await check(`{ARGON2I}${h}`, 'secret');
  });

  it('refuses a scheme that does not match the hash inside it', async () => {
    const h = await argon2.hash('secret', { ...ARGON2_PARAMS, type: argon2.argon2i });
    const stored = parseStoredPassword(`{ARGON2ID}${h}`);
    assert.equal(stored.kind, 'unusable');
    assert.match(stored.problem ?? '', /argon2i/);
  });

  it('verifies {SHA512-CRYPT} and {SHA256-CRYPT} (openssl vectors) and explicit rounds', async () => {
    await check(`{SHA512-CRYPT}${SHA512}`, 'secret');
    await check(`{SHA256-CRYPT}${SHA256}`, 'secret');
    await check(`{SHA512-CRYPT}${SHA512_ROUNDS}`, 'secret');
  });

  it('verifies several SHA-crypt hashes at once (one worker, queued)', async () => {
    const stored = parseStoredPassword(`{SHA512-CRYPT}${SHA512}`);
    const results = await Promise.all(['secret', 'x', 'secret', 'y'].map((p) => verifyStoredPassword(stored, p)));
    assert.deepEqual(results, [true, false, true, false]);
  });

  it('refuses SHA-crypt rounds beyond the cap instead of computing them', () => {
    const stored = parseStoredPassword(
      `{SHA512-CRYPT}$6$rounds=${MAX_SHA_CRYPT_ROUNDS + 1}$saltsalt$${'a'.repeat(86)}`,
    );
    assert.equal(stored.kind, 'unusable');
    assert.match(stored.problem ?? '', /rounds/);
  });

  it('verifies {BLF-CRYPT}: a fixed $2a$ vector, the same as $2y$ and $2b$, and a fresh bcryptjs hash', async () => {
    await check(`{BLF-CRYPT}${BCRYPT_ABC}`, 'abc');
    await check(`{BLF-CRYPT}${BCRYPT_ABC.replace('$2a$', '$2y$')}`, 'abc');
    await check(`{BLF-CRYPT}${BCRYPT_ABC.replace('$2a$', '$2b$')}`, 'abc');
    await check(`{BLF-CRYPT}${bcrypt.hashSync('secret', 4)}`, 'secret');
  });

  it('verifies {PLAIN} and {CLEAR}, and exposes their plaintext as the shared secret', async () => {
    await check('{PLAIN}secret', 'secret', 'Secret');
    await check('{CLEAR}pa:ss word', 'pa:ss word', 'pa:ss');
    assert.equal(plaintextOf(parseStoredPassword('{PLAIN}secret')), 'secret');
    assert.equal(plaintextOf(parseStoredPassword(`{SHA512-CRYPT}${SHA512}`)), null);
  });

  it('reads scheme names case-insensitively', async () => {
    await check('{plain}secret', 'secret');
    await check(`{sha512-crypt}${SHA512}`, 'secret');
  });

  it('detects bare crypt strings by their prefix', async () => {
    await check(SHA512, 'secret');
    await check(SHA256, 'secret');
    await check(BCRYPT_ABC.replace('$2a$', '$2y$'), 'abc');
    await check((await hashPassword('x')).slice('{ARGON2ID}'.length), 'x');
    assert.equal(parseStoredPassword(SHA512).scheme, 'SHA512-CRYPT');
  });

  it('verifies {CRYPT} holding a modern crypt string and refuses DES/MD5-crypt', async () => {
    await check(`{CRYPT}${SHA512}`, 'secret');
    assert.equal(parseStoredPassword('{CRYPT}abJnggxhB/yWI').kind, 'unusable');
    assert.equal(parseStoredPassword('$1$saltsalt$qjXMvbEw8oaL.CzflDugX/').kind, 'unusable');
  });

  it('gives a clear reason for {CRAM-MD5}, unknown schemes, bare values and empty fields', async () => {
    const cases: Array<[string, RegExp]> = [
      ['{CRAM-MD5}e02d374fde0dc75a17a557039a3a5338c7743304777dccd376f332bee68d2cf6', /CRAM-MD5.*cannot check/],
      ['{SSHA512}abcd', /not supported/],
      ['{NOPE}x', /\{NOPE\} is not supported/],
      ['secret', /no \{SCHEME\} prefix/],
      ['', /no password/],
      ['{PLAIN}', /empty/],
      ['{ARGON2ID}$argon2id$garbage', /malformed/],
      [`{SHA512-CRYPT}${SHA256}`, /\$6\$/],
      ['{BLF-CRYPT}$2y$10$short', /malformed/],
      [`{SHA512-CRYPT}${SHA512.slice(0, -1)}`, /digest length/],
    ];
    for (const [field, reason] of cases) {
      const stored = parseStoredPassword(field);
      assert.equal(stored.kind, 'unusable', field);
      assert.match(stored.problem ?? '', reason, field);
      assert.equal(await verifyStoredPassword(stored, field), false);
      assert.equal(await verifyStoredPassword(stored, ''), false);
    }
  });
});
