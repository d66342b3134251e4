/**
 * Fail fast and say why: `postern serve` that cannot start one of its listeners, the LMTP socket or the
 * metrics port closes everything and exits 78; `check-config` finds what serve would trip over (certificate,
 * key, users file, mail root, socket directory), naming the key and the path, and lists the SASL mechanisms
 * CAPA will really offer. Output piped into `head` ends quietly.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { skipUnlessCi } from '../helpers/peers.ts';
import { BIN, freePort, postern } from '../helpers/realServer.ts';
import { testCert } from '../helpers/server.ts';

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

let dir: string;

function config(body: string): string {
  const file = join(dir, `p${Math.random().toString(36).slice(2)}.toml`);
  writeFileSync(file, body);
  return file;
}

function listen(port: number, tls = 'none'): string {
  return `[[listen]]\naddress = "127.0.0.1"\nport = ${port}\ntls = "${tls}"\n`;
}

const BASE = `[storage]\nroot = "mail"\n[auth]\nusers_file = "users"\n`;

/** Whether something accepts on 127.0.0.1:port. */
async function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s: Server = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'postern-startup-'));
  chmodSync(dir, 0o755);
  const { cert, key } = await testCert();
  writeFileSync(join(dir, 'cert.pem'), cert);
  writeFileSync(join(dir, 'key.pem'), key);
  const r = postern(['user', 'add', 'alice', '--config', config(BASE)], 'alice-password\n');
  assert.equal(r.status, 0, r.stderr);
  chmodSync(join(dir, 'users'), 0o644);
});

after(() => rmSync(dir, { recursive: true, force: true }));

describe('serve fails fast', () => {
  test('a second listener that cannot bind closes the first one and exits 78, naming the listener', async () => {
    const first = await freePort();
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const taken = (busy.address() as { port: number }).port;
    try {
      const r = postern(['serve', '--config', config(listen(first) + listen(taken) + BASE)]);
      assert.equal(r.status, 78, `${r.stdout}${r.stderr}`);
      assert.match(r.stderr, new RegExp(`\\[\\[listen\\]\\] 127\\.0\\.0\\.1:${taken}: address already in use`));
      assert.ok(await canBind(first), 'the first listener is closed');
    } finally {
      busy.close();
    }
  });

  test('an LMTP socket in a directory that does not exist stops the start, naming lmtp.socket', () => {
    const sock = join(dir, 'no-such-dir', 'lmtp');
    const r = postern(['serve', '--config', config(`${listen(0)}${BASE}[lmtp]\nsocket = "${sock}"\n`)]);
    assert.equal(r.status, 78, r.stderr);
    assert.match(r.stderr, /lmtp\.socket = ".*no-such-dir\/lmtp": directory .*no-such-dir does not exist/);
  });

  test('a metrics port in use closes the POP3 and LMTP listeners and exits 78', async () => {
    const pop = await freePort();
    const lmtp = await freePort();
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const taken = (busy.address() as { port: number }).port;
    try {
      const body = `${listen(pop)}${BASE}[lmtp]\nport = ${lmtp}\n[metrics]\nenabled = true\nport = ${taken}\n`;
      const r = postern(['serve', '--config', config(body)]);
      assert.equal(r.status, 78, `${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /metrics\.port .*address already in use/);
      assert.ok(await canBind(pop), 'POP3 listener closed');
      assert.ok(await canBind(lmtp), 'LMTP listener closed');
    } finally {
      busy.close();
    }
  });

  test('a missing certificate is named by its key, not a bare ENOENT', () => {
    const body = `${listen(0, 'implicit')}${BASE}[tls]\ncert = "missing.pem"\nkey = "key.pem"\n`;
    const r = postern(['serve', '--config', config(body)]);
    assert.equal(r.status, 78, r.stderr);
    assert.match(r.stderr, /tls\.cert = ".*missing\.pem": does not exist/);
    assert.doesNotMatch(r.stderr, /ENOENT/);
  });
});

describe('check-config checks what serve needs', () => {
  test('a good config: exit 0 and the SASL mechanisms that will be offered, with the reasons for the rest', () => {
    const body = `${listen(0, 'starttls')}${BASE}[tls]\ncert = "cert.pem"\nkey = "key.pem"\n`;
    const r = postern(['check-config', '--config', config(body)]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^config OK/);
    assert.match(r.stdout, /sasl {4}over TLS: SCRAM-SHA-256 PLAIN LOGIN\n/);
    assert.match(r.stdout, /sasl {4}unencrypted from other hosts \(loopback counts as TLS\): SCRAM-SHA-256\n/);
    assert.match(r.stdout, /CRAM-MD5 off: no user has a shared secret/);
    assert.match(r.stdout, /OAUTHBEARER off: no \[oauth\]/);
    assert.match(r.stdout, /EXTERNAL off: needs tls\.client_ca/);
    // A user with a shared secret turns CRAM-MD5 on.
    const users2 = join(dir, 'users-apop');
    const body2 = body.replace('users_file = "users"', `users_file = "${users2}"`);
    const add = postern(['user', 'add', 'bob', '--apop', '--config', config(body2)], 'bob-password\n');
    assert.equal(add.status, 0, add.stderr);
    const r2 = postern(['check-config', '--config', config(body2)]);
    assert.match(r2.stdout, /over TLS: SCRAM-SHA-256 PLAIN LOGIN CRAM-MD5\n/);
  });

  test('missing key file, missing users file, mail root that is a file: exit 78, each named', () => {
    writeFileSync(join(dir, 'a-file'), '');
    const body =
      `${listen(0, 'implicit')}[storage]\nroot = "a-file"\n[auth]\nusers_file = "nobody-here"\n` +
      `[tls]\ncert = "cert.pem"\nkey = "nokey.pem"\n`;
    const r = postern(['check-config', '--config', config(body)]);
    assert.equal(r.status, 78);
    assert.match(r.stderr, /problem tls\.key = ".*nokey\.pem": does not exist/);
    assert.match(r.stderr, /problem auth\.users_file = ".*nobody-here": does not exist/);
    assert.match(r.stderr, /problem storage\.root = ".*a-file": is not a directory/);
    assert.doesNotMatch(r.stderr, /config OK/);
  });

  test('a mail root the server user cannot write (checked as that user)', {
    skip: skipUnlessCi(!isRoot && 'needs root'),
  }, () => {
    const root = join(dir, 'rootmail');
    mkdirSync(root, { mode: 0o755 });
    const body = `${listen(0)}[storage]\nroot = "rootmail"\n[auth]\nusers_file = "users"\n`;
    const file = config(body);
    const r = spawnSync(process.execPath, [BIN, 'check-config', '--config', file], {
      encoding: 'utf8',
      uid: NOBODY,
      gid: NOBODY,
      timeout: 60_000,
    });
    assert.equal(r.status, 78, `${r.stdout}${r.stderr}`);
    assert.match(r.stderr, new RegExp(`storage\\.root = ".*rootmail": not writable by uid ${NOBODY}`));
    // serve, as that user, refuses the same way.
    const s = spawnSync(process.execPath, [BIN, 'serve', '--config', file], {
      encoding: 'utf8',
      uid: NOBODY,
      gid: NOBODY,
      timeout: 60_000,
    });
    assert.equal(s.status, 78, s.stderr);
    assert.match(s.stderr, /storage\.root = ".*rootmail": not writable/);
  });
});

describe('users file ownership', () => {
  test('user add as root creates the users file owned by the mail root owner (the service user)', {
    skip: skipUnlessCi(!isRoot && 'needs root'),
  }, () => {
    const sub = join(dir, 'svc');
    mkdirSync(join(sub, 'mail'), { recursive: true });
    chownSync(join(sub, 'mail'), NOBODY, NOBODY);
    const file = join(sub, 'p.toml');
    writeFileSync(file, `[storage]\nroot = "mail"\n[auth]\nusers_file = "users"\n`);
    const r = postern(['user', 'add', 'carol', '--config', file], 'carol-password\n');
    assert.equal(r.status, 0, r.stderr);
    const st = statSync(join(sub, 'users'));
    assert.equal(st.uid, NOBODY);
    assert.equal(st.mode & 0o777, 0o600);
    // A second add keeps the owner.
    assert.equal(postern(['user', 'add', 'dave', '--config', file], 'dave-password\n').status, 0);
    assert.equal(statSync(join(sub, 'users')).uid, NOBODY);
  });
});

describe('piped output', () => {
  test('`postern user list | head -1` ends quietly, without an EPIPE stack', () => {
    const users = join(dir, 'many-users');
    const lines = Array.from({ length: 4000 }, (_, i) => `user${i}:{PLAIN}x${i}::::::`).join('\n');
    writeFileSync(users, `${lines}\n`);
    const file = config(`[auth]\nusers_file = "${users}"\n`);
    const r = spawnSync('sh', ['-c', `"${process.execPath}" "${BIN}" user list --config "${file}" | head -1`], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0);
    assert.equal(r.stdout.split('\n').filter(Boolean).length, 1);
    assert.equal(r.stderr, '');
  });
});
