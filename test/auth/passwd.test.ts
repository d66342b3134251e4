import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { addUser, deleteUser, PasswdFileAuthenticator } from '../../src/auth/passwd.ts';
import { parsePasswd } from '../../src/auth/passwd-format.ts';
import { type Argon2Verify, defaultArgon2Verify, dummyArgon2Hash, hashPassword } from '../../src/auth/schemes.ts';
import type { AuthLogger } from '../../src/auth/types.ts';
import { withLatin1Line } from '../helpers/users-file.ts';

const SHA512 = '$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1';
const CRAM = '{CRAM-MD5}e02d374fde0dc75a17a557039a3a5338c7743304777dccd376f332bee68d2cf6';
const b64 = (s: string): string => Buffer.from(s).toString('base64');

let dir: string;
let daveHash: string;

/** A file as Dovecot users write them: comments, blank lines, short lines, full lines with extra fields. */
function dovecotFile(): string {
  return [
    '# Postern test users, Dovecot passwd-file format',
    '',
    'alice:{PLAIN}secret',
    `bob:{SHA512-CRYPT}${SHA512}:1000:1000:Bob B:/home/bob:/bin/false:userdb_mail=maildir:~/Maildir quota_rule=*:storage=1G`,
    `carol:{BLF-CRYPT}${bcrypt.hashSync('carolpw', 4).replace('$2b$', '$2y$')}::::::mailbox=shared-carol`,
    `dave:${daveHash}::::::apop_secret=${b64('dave apop')}`,
    `erin:${CRAM}`,
    `frank:{SHA512-CRYPT}${SHA512}::::::nologin`,
    '   ',
    'gina',
    ':not a user',
    'alice:{PLAIN}other',
    'bad name:{PLAIN}x',
    'mallory:{PLAIN}x::::::mailbox=../../etc',
    'josé:{PLAIN}olé',
    `ivan:{PLAIN}ivanpw::::::apop_secret=not*base64`,
    '',
  ].join('\n');
}

interface Spy {
  readonly verify: Argon2Verify;
  readonly digests: string[];
}

function spy(): Spy {
  const digests: string[] = [];
  return {
    digests,
    verify: (digest, password) => {
      digests.push(digest);
      return defaultArgon2Verify(digest, password);
    },
  };
}

function recordingLogger(): AuthLogger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    warn(fields, msg) {
      lines.push(`${JSON.stringify(fields)} ${msg}`);
    },
  };
}

async function fixture(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text, { mode: 0o600 });
  return path;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postern-passwd-'));
  daveHash = await hashPassword('davepw');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('passwd file parsing', () => {
  it('reads users, keeps non-user lines and reports every problem', () => {
    const parsed = parsePasswd(dovecotFile());
    assert.deepEqual(
      [...parsed.users.keys()],
      ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'mallory', 'josé', 'ivan'],
    );
    assert.equal(parsed.lines.length, 16);
    assert.equal(parsed.lines[0].entry, null);
    assert.equal(parsed.lines[10].entry, null); // ':not a user'
    const bob = parsed.users.get('bob')!;
    assert.deepEqual(bob.extra, ['userdb_mail=maildir:~/Maildir', 'quota_rule=*:storage=1G']);
    assert.equal(bob.fields[4], 'Bob B');
    const issues = parsed.issues.map((i) => `${i.lineNo} ${i.user}: ${i.message}`);
    const expect = [
      /^7 erin: cannot log in with a password: \{CRAM-MD5\}/,
      /^8 frank: cannot log in: Dovecot field 'nologin'/,
      /^10 gina: cannot log in with a password: no password/,
      /^12 alice: user also defined on line 3/,
      /^13 bad name: .*whitespace/,
      /^14 mallory: cannot log in: invalid mailbox=/,
      /^16 ivan: apop_secret= is not base64/,
    ];
    assert.equal(issues.length, expect.length, issues.join('\n'));
    expect.forEach((re, i) => {
      assert.match(issues[i], re);
    });
  });

  it('accepts CRLF line endings and a missing final newline', () => {
    const parsed = parsePasswd('# c\r\nalice:{PLAIN}secret\r\nbob:{PLAIN}pw');
    assert.equal(parsed.users.get('alice')?.sharedSecret, 'secret');
    assert.equal(parsed.users.get('bob')?.sharedSecret, 'pw');
  });
});

describe('PasswdFileAuthenticator', () => {
  let auth: PasswdFileAuthenticator;
  let argon2: Spy;
  let log: ReturnType<typeof recordingLogger>;

  before(async () => {
    argon2 = spy();
    log = recordingLogger();
    auth = await PasswdFileAuthenticator.load(await fixture('dovecot', dovecotFile()), {
      argon2Verify: argon2.verify,
      logger: log,
    });
  });

  it('verifies each scheme in the file and returns the principal', async () => {
    assert.deepEqual(await auth.verifyPassword('alice', 'secret'), { user: 'alice', mailboxId: 'alice' });
    assert.deepEqual(await auth.verifyPassword('bob', 'secret'), { user: 'bob', mailboxId: 'bob' });
    assert.deepEqual(await auth.verifyPassword('carol', 'carolpw'), { user: 'carol', mailboxId: 'shared-carol' });
    assert.deepEqual(await auth.verifyPassword('dave', 'davepw'), { user: 'dave', mailboxId: 'dave' });
    assert.deepEqual(await auth.verifyPassword('josé', 'olé'), { user: 'josé', mailboxId: 'josé' });
  });

  it('refuses wrong passwords, and uses the first line of a duplicated user', async () => {
    for (const [user, pw] of [
      ['alice', 'Secret'],
      ['alice', 'other'],
      ['bob', 'secret '],
      ['carol', ''],
      ['dave', 'dave apop'],
    ]) {
      assert.equal(await auth.verifyPassword(user, pw), null, `${user}/${pw}`);
    }
  });

  it('refuses unknown users, and compares names exactly', async () => {
    assert.equal(await auth.verifyPassword('nobody', 'secret'), null);
    assert.equal(await auth.verifyPassword('Alice', 'secret'), null);
    assert.equal(await auth.verifyPassword('alice ', 'secret'), null);
    assert.equal(await auth.verifyPassword('jose\u0301', 'olé'), null); // NFD spelling of josé
    assert.equal(await auth.verifyPassword('', ''), null);
    assert.equal(await auth.verifyPassword('bad name', 'x'), null);
  });

  it('refuses users that cannot log in, logs why, and never says it with the password', async () => {
    log.lines.length = 0;
    assert.equal(await auth.verifyPassword('erin', 'whatever'), null);
    assert.equal(await auth.verifyPassword('frank', 'secret'), null); // right password, but nologin
    assert.equal(await auth.verifyPassword('gina', ''), null);
    assert.equal(await auth.verifyPassword('mallory', 'x'), null);
    assert.equal(log.lines.length, 4, log.lines.join('\n'));
    assert.match(log.lines[0], /"user":"erin".*login refused: \{CRAM-MD5\}/);
    assert.match(log.lines[1], /"user":"frank".*nologin/);
    assert.ok(!log.lines.some((l) => l.includes('whatever') || l.includes('secret')));
  });

  it('runs the same argon2 verification for an unknown user as for a wrong password', async () => {
    const dummy = await dummyArgon2Hash();
    const count = async (user: string, pw: string): Promise<{ dummy: number; real: number }> => {
      argon2.digests.length = 0;
      await auth.verifyPassword(user, pw);
      return {
        dummy: argon2.digests.filter((d) => d === dummy).length,
        real: argon2.digests.filter((d) => d !== dummy).length,
      };
    };
    assert.deepEqual(await count('nobody', 'pw'), { dummy: 1, real: 0 });
    assert.deepEqual(await count('bad name', 'pw'), { dummy: 1, real: 0 });
    assert.deepEqual(await count('dave', 'wrong'), { dummy: 0, real: 1 });
    // Users without an argon2 hash also pay one argon2 verification, so fast schemes do not stand out.
    assert.deepEqual(await count('alice', 'wrong'), { dummy: 1, real: 0 });
    assert.deepEqual(await count('erin', 'wrong'), { dummy: 1, real: 0 });
    // The dummy hash uses the parameters Postern writes.
    assert.match(dummy, /^\$argon2id\$v=19\$/);
    for (const p of ['m=19456', 't=2', 'p=1']) assert.ok(dummy.includes(p));
  });

  it('gives shared secrets only to {PLAIN} users and apop_secret= holders who may log in', async () => {
    assert.equal(await auth.sharedSecret('alice'), 'secret');
    assert.equal(await auth.sharedSecret('dave'), 'dave apop');
    assert.equal(await auth.sharedSecret('bob'), null);
    assert.equal(await auth.sharedSecret('frank'), null);
    assert.equal(await auth.sharedSecret('ivan'), null); // apop_secret= present but broken
    assert.equal(await auth.sharedSecret('nobody'), null);
    assert.equal(auth.hasSharedSecrets(), true);
  });

  it('looks users up for delivery, including those who may not log in', async () => {
    assert.deepEqual(await auth.lookup('carol'), { user: 'carol', mailboxId: 'shared-carol' });
    assert.deepEqual(await auth.lookup('frank'), { user: 'frank', mailboxId: 'frank' });
    assert.equal(await auth.lookup('mallory'), null); // mailbox=../../etc is refused
    assert.equal(await auth.lookup('nobody'), null);
    assert.equal(await auth.lookup('bad name'), null);
  });

  it('lists the problems of the file', () => {
    assert.equal(auth.issues.length, 7);
  });
});

describe('PasswdFileAuthenticator file handling', () => {
  it('has no shared secrets when every user has only a hash', async () => {
    const path = await fixture('hashes-only', `bob:{SHA512-CRYPT}${SHA512}\ndave:${daveHash}\n`);
    const auth = await PasswdFileAuthenticator.load(path);
    assert.equal(auth.hasSharedSecrets(), false);
  });

  it('picks up changes to the file without a restart', async () => {
    const path = await fixture('reload', 'alice:{PLAIN}secret\n');
    const auth = await PasswdFileAuthenticator.load(path);
    assert.equal(await auth.lookup('zoe'), null);
    await addUser(path, 'zoe', 'zoepw', { apopSecret: 'zoe apop' });
    assert.deepEqual(await auth.verifyPassword('zoe', 'zoepw'), { user: 'zoe', mailboxId: 'zoe' });
    assert.equal(await auth.sharedSecret('zoe'), 'zoe apop');
  });

  it('does not reload on its own when autoReload is false, but reload() does', async () => {
    const path = await fixture('noreload', 'alice:{PLAIN}secret\n');
    const auth = await PasswdFileAuthenticator.load(path, { autoReload: false });
    await writeFile(path, 'alice:{PLAIN}secret\nzed:{PLAIN}pw\n');
    assert.equal(await auth.lookup('zed'), null);
    await auth.reload();
    assert.deepEqual(await auth.lookup('zed'), { user: 'zed', mailboxId: 'zed' });
  });

  it('keeps the previous users when the file turns unreadable, and warns once', async () => {
    const path = await fixture('broken', 'alice:{PLAIN}secret\n');
    const log = recordingLogger();
    const auth = await PasswdFileAuthenticator.load(path, { logger: log });
    // A folder where the file was: it can be opened but not read (EISDIR).
    await rm(path);
    await mkdir(path);
    assert.deepEqual(await auth.verifyPassword('alice', 'secret'), { user: 'alice', mailboxId: 'alice' });
    assert.deepEqual(await auth.lookup('alice'), { user: 'alice', mailboxId: 'alice' });
    assert.equal(log.lines.length, 1);
    assert.match(log.lines[0], /EISDIR.*keeping the previous users/);
  });

  it('skips a line that is not UTF-8, logs its number (never its text), and serves the other users', async () => {
    // Issue 13 #15: one such byte used to stop the server. A Latin-1 é, and a line that would hold a password.
    const path = join(dir, 'latin1');
    await writeFile(path, withLatin1Line(['alice:{PLAIN}secret', 'bob:{PLAIN}pw'], 2));
    const log = recordingLogger();
    const auth = await PasswdFileAuthenticator.load(path, { logger: log });
    assert.deepEqual(await auth.verifyPassword('alice', 'secret'), { user: 'alice', mailboxId: 'alice' });
    assert.deepEqual(await auth.verifyPassword('bob', 'pw'), { user: 'bob', mailboxId: 'bob' });
    assert.deepEqual(auth.issues, [{ lineNo: 2, message: 'line is not valid UTF-8; line ignored' }]);
    assert.equal(log.lines.length, 1, log.lines.join('\n'));
    assert.match(log.lines[0], /"lineNo":2\b.*not valid UTF-8; line ignored/);
    assert.ok(!log.lines[0].includes('hunter2') && !log.lines[0].includes('jos'), log.lines[0]);
    assert.ok(!log.lines[0].includes('"line"'), 'the line number is logged as lineNo, not as the redacted `line`');
  });

  it('logs malformed user lines by number, not as a redacted `line` field', async () => {
    const path = await fixture('malformed', 'alice:{PLAIN}secret\nbad name:{PLAIN}x\n');
    const log = recordingLogger();
    await PasswdFileAuthenticator.load(path, { logger: log });
    assert.equal(log.lines.length, 1);
    assert.match(log.lines[0], /^\{"path":"[^"]+","lineNo":2,"user":"bad name"\} /);
  });

  it('rewrites a file with a line that is not UTF-8 without touching that line', async () => {
    const odd = Buffer.from('jos\xe9:{PLAIN}x\r', 'latin1');
    const path = join(dir, 'latin1-edit');
    await writeFile(path, Buffer.concat([Buffer.from('# users\n'), odd, Buffer.from('\nalice:{PLAIN}secret\n')]));
    await addUser(path, 'carl', 'carlpw');
    const after = await readFile(path);
    assert.ok(
      after.subarray(0, 8 + odd.length + 1).equals(Buffer.concat([Buffer.from('# users\n'), odd, Buffer.from('\n')])),
    );
    assert.match(after.toString('latin1'), /\nalice:\{PLAIN\}secret\ncarl:\{ARGON2ID\}/);
    await deleteUser(path, 'alice');
    assert.ok((await readFile(path)).includes(odd), 'the undecodable line survives a delete too');
  });

  it('treats a missing file as no users and sees it once created', async () => {
    const path = join(dir, 'later');
    const log = recordingLogger();
    const auth = await PasswdFileAuthenticator.load(path, { logger: log });
    assert.match(log.lines[0], /does not exist/);
    assert.equal(await auth.verifyPassword('alice', 'secret'), null);
    assert.equal(auth.hasSharedSecrets(), false);
    await writeFile(path, 'alice:{PLAIN}secret\n');
    assert.deepEqual(await auth.verifyPassword('alice', 'secret'), { user: 'alice', mailboxId: 'alice' });
    assert.equal(auth.hasSharedSecrets(), true);
  });

  it('survives garbage lines without throwing', async () => {
    const junk = [
      '{}',
      '::::',
      'x:{',
      'x:{}',
      'y:$6$',
      'z:$argon2id$',
      'w:{PLAIN',
      '\u0001:{PLAIN}a',
      'v:{PLAIN}a:::::::::::',
    ];
    const path = await fixture('junk', `${junk.join('\n')}\n`);
    const auth = await PasswdFileAuthenticator.load(path);
    for (const user of ['x', 'y', 'z', 'w']) assert.equal(await auth.verifyPassword(user, ''), null);
    assert.deepEqual(await auth.verifyPassword('v', 'a'), { user: 'v', mailboxId: 'v' });
  });
});
