/**
 * The cache of verified credentials (src/auth/credential-cache.ts) inside the users-file authenticator: a right
 * password verified once is accepted again without argon2 within the TTL; wrong passwords and unknown users are
 * never cached and always pay a full verification; every change of the users file and every reload (SIGHUP)
 * forgets everything.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CredentialCache } from '../../src/auth/credential-cache.ts';
import { addUser, deleteUser, PasswdFileAuthenticator, setPassword } from '../../src/auth/passwd.ts';
import { type Argon2Verify, defaultArgon2Verify, dummyArgon2Hash, hashPassword } from '../../src/auth/schemes.ts';
import { parseConfig } from '../../src/config/config.ts';

let dir: string;
let aliceHash: string;
let n = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postern-credcache-'));
  aliceHash = await hashPassword('alicepw');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Counting {
  readonly verify: Argon2Verify;
  /** argon2 verifications against real hashes and against the dummy hash since the last reset. */
  counts(): { real: number; dummy: number };
  reset(): void;
}

async function counting(): Promise<Counting> {
  const dummy = await dummyArgon2Hash();
  let real = 0;
  let fake = 0;
  return {
    verify: (digest, password) => {
      if (digest === dummy) fake++;
      else real++;
      return defaultArgon2Verify(digest, password);
    },
    counts: () => ({ real, dummy: fake }),
    reset: () => {
      real = 0;
      fake = 0;
    },
  };
}

async function setup(opts: { ttlMs?: number; maxEntries?: number; now?: () => number } = {}) {
  const path = join(dir, `users-${++n}`);
  await writeFile(path, `alice:${aliceHash}\nplain:{PLAIN}plainpw\n`, { mode: 0o600 });
  const argon2 = await counting();
  const lookups: string[] = [];
  const auth = await PasswdFileAuthenticator.load(path, {
    argon2Verify: argon2.verify,
    cache: { maxEntries: opts.maxEntries ?? 100, ttlMs: opts.ttlMs ?? 60_000, now: opts.now },
    onCacheLookup: (r) => lookups.push(r),
  });
  return { path, auth, argon2, lookups };
}

const ALICE = { user: 'alice', mailboxId: 'alice' };

describe('credential cache', () => {
  it('hit: the second login with the right password runs no argon2', async () => {
    const { auth, argon2, lookups } = await setup();
    assert.deepEqual(await auth.verifyPassword('alice', 'alicepw'), ALICE);
    assert.deepEqual(argon2.counts(), { real: 1, dummy: 0 });
    argon2.reset();
    for (let i = 0; i < 3; i++) assert.deepEqual(await auth.verifyPassword('alice', 'alicepw'), ALICE);
    assert.deepEqual(argon2.counts(), { real: 0, dummy: 0 });
    assert.deepEqual(lookups, ['miss', 'hit', 'hit', 'hit']);
    assert.equal(auth.cache.hits, 3);
    assert.equal(auth.cache.misses, 1);
  });

  it('wrong passwords are never cached and always pay a full verification, before and after a hit', async () => {
    const { auth, argon2 } = await setup();
    for (let i = 0; i < 2; i++) assert.equal(await auth.verifyPassword('alice', 'wrong'), null);
    assert.deepEqual(argon2.counts(), { real: 2, dummy: 0 });
    assert.equal(auth.cache.size, 0);
    await auth.verifyPassword('alice', 'alicepw');
    argon2.reset();
    assert.equal(await auth.verifyPassword('alice', 'wrong'), null);
    assert.equal(await auth.verifyPassword('alice', 'alicepw '), null);
    assert.deepEqual(argon2.counts(), { real: 2, dummy: 0 });
    assert.equal(auth.cache.size, 1);
  });

  it('unknown users and {PLAIN} wrong passwords pay one argon2id; a right {PLAIN} password none', async () => {
    const { auth, argon2 } = await setup();
    assert.equal(await auth.verifyPassword('nobody', 'alicepw'), null);
    assert.equal(await auth.verifyPassword('nobody', 'alicepw'), null);
    assert.deepEqual(argon2.counts(), { real: 0, dummy: 2 });
    argon2.reset();
    assert.equal(await auth.verifyPassword('plain', 'wrong'), null);
    assert.deepEqual(argon2.counts(), { real: 0, dummy: 1 });
    argon2.reset();
    assert.deepEqual(await auth.verifyPassword('plain', 'plainpw'), { user: 'plain', mailboxId: 'plain' });
    assert.deepEqual(argon2.counts(), { real: 0, dummy: 0 });
    assert.equal(auth.cache.size, 0); // nothing to cache: the compare is cheaper than the cache key
  });

  it('TTL: an entry older than the TTL is verified again', async () => {
    let now = 1_000_000;
    const { auth, argon2 } = await setup({ ttlMs: 10_000, now: () => now });
    await auth.verifyPassword('alice', 'alicepw');
    now += 9_999;
    await auth.verifyPassword('alice', 'alicepw');
    assert.deepEqual(argon2.counts(), { real: 1, dummy: 0 });
    now += 10_001;
    assert.deepEqual(await auth.verifyPassword('alice', 'alicepw'), ALICE);
    assert.deepEqual(argon2.counts(), { real: 2, dummy: 0 });
  });

  it('is cleared by reload() (what SIGHUP runs)', async () => {
    const { auth, argon2 } = await setup();
    await auth.verifyPassword('alice', 'alicepw');
    assert.equal(auth.cache.size, 1);
    await auth.reload();
    assert.equal(auth.cache.size, 0);
    await auth.verifyPassword('alice', 'alicepw');
    assert.deepEqual(argon2.counts(), { real: 2, dummy: 0 });
  });

  it('postern user passwd: the old password stops working at once, the new one is verified', async () => {
    const { path, auth, argon2 } = await setup();
    assert.deepEqual(await auth.verifyPassword('alice', 'alicepw'), ALICE);
    await setPassword(path, 'alice', 'newpw');
    argon2.reset();
    assert.equal(await auth.verifyPassword('alice', 'alicepw'), null);
    assert.deepEqual(argon2.counts(), { real: 1, dummy: 0 }); // a full verification, not a hit
    assert.deepEqual(await auth.verifyPassword('alice', 'newpw'), ALICE);
  });

  it('postern user del: a cached user cannot log in any more', async () => {
    const { path, auth } = await setup();
    assert.deepEqual(await auth.verifyPassword('alice', 'alicepw'), ALICE);
    await deleteUser(path, 'alice');
    assert.equal(await auth.verifyPassword('alice', 'alicepw'), null);
    // … and a new user of the same name with another password does not inherit the entry.
    await addUser(path, 'alice', 'otherpw');
    assert.equal(await auth.verifyPassword('alice', 'alicepw'), null);
    assert.deepEqual(await auth.verifyPassword('alice', 'otherpw'), ALICE);
  });

  it('is off with cache_size 0 or cache_ttl 0', async () => {
    for (const opts of [{ maxEntries: 0 }, { ttlMs: 0 }]) {
      const { auth, argon2, lookups } = await setup(opts);
      await auth.verifyPassword('alice', 'alicepw');
      await auth.verifyPassword('alice', 'alicepw');
      assert.deepEqual(argon2.counts(), { real: 2, dummy: 0 });
      assert.deepEqual(lookups, []);
    }
  });
});

describe('CredentialCache', () => {
  it('keys by a keyed HMAC: never the password, different per process key, no (user, password) ambiguity', () => {
    const a = new CredentialCache({ maxEntries: 10, ttlMs: 1000 });
    const b = new CredentialCache({ maxEntries: 10, ttlMs: 1000 });
    const k = a.keyOf('alice', 'hunter2');
    assert.ok(!k.includes('hunter2'));
    assert.notEqual(k, b.keyOf('alice', 'hunter2'));
    assert.notEqual(a.keyOf('ab', 'c'), a.keyOf('a', 'bc'));
    assert.notEqual(a.keyOf('a\0b', 'c'), a.keyOf('a', 'b\0c'));
  });

  it('is bounded and evicts the least recently used entry', () => {
    const c = new CredentialCache({ maxEntries: 2, ttlMs: 60_000 });
    c.add('x');
    c.add('y');
    assert.equal(c.has('x'), true); // x is now the most recent
    c.add('z');
    assert.equal(c.size, 2);
    assert.equal(c.has('y'), false);
    assert.equal(c.has('x'), true);
    assert.equal(c.has('z'), true);
  });

  it('has config keys with defaults in the schema', () => {
    const defaults = parseConfig('', '/etc/postern/postern.toml');
    assert.equal(defaults.auth.cacheSize, 10_000);
    assert.equal(defaults.auth.cacheTtlMs, 3_600_000);
    const set = parseConfig('[auth]\ncache_size = 0\ncache_ttl = 60\n', '/etc/postern/postern.toml');
    assert.equal(set.auth.cacheSize, 0);
    assert.equal(set.auth.cacheTtlMs, 60_000);
    assert.throws(() => parseConfig('[auth]\ncache_size = -1\n', '/x.toml'), /cache_size/);
  });
});
