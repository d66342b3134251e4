/**
 * Interop with POP3 clients nobody here wrote: Python's poplib and curl, against the real `postern serve`
 * process on 127.0.0.1, with mail dropped into the Maildir the way Postfix writes it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { generate } from 'selfsigned';
import { skipUnlessCi } from '../helpers/peers.ts';
import { dropPostfixStyle, type RealServer, startRealServer } from '../helpers/realServer.ts';
import { Wire } from '../helpers/wire.ts';

const HAVE_CURL = spawnSync('curl', ['--version']).status === 0;
const HAVE_PYTHON = spawnSync('python3', ['-c', 'import poplib']).status === 0;

const MSG_A = 'From: a@example.com\nTo: alice@example.com\nSubject: first\n\nHello Alice.\n.leading dot\n';
const MSG_B = 'From: b@example.com\nSubject: second\n\nline 1\nline 2\nline 3\n';
const MSG_C = 'Subject: third\n\nno final newline';

/** Runs a Python snippet with poplib; `ARGS` is a dict of the given values; prints JSON from `out`. */
function python(code: string, args: Record<string, unknown>): unknown {
  const script = `import json, poplib, ssl, sys\nARGS = json.loads(sys.argv[1])\nctx = ssl.create_default_context()\nctx.check_hostname = False\nctx.verify_mode = ssl.CERT_NONE\nout = None\n${code}\nprint(json.dumps(out))\n`;
  const r = spawnSync('python3', ['-c', script, JSON.stringify(args)], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function curl(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('curl', ['-sS', '--max-time', '20', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function seed(s: RealServer, user: string): void {
  const md = s.maildir(user);
  dropPostfixStyle(md, '1700000001.V801I1a2bM100001.mx.example.com', MSG_A);
  dropPostfixStyle(md, '1700000002.V801I1a2cM100002.mx.example.com', MSG_B);
  dropPostfixStyle(md, '1700000003.V801I1a2dM100003.mx.example.com', MSG_C);
}

const crlf = (s: string) => s.replace(/\n/g, '\r\n');

describe('interop: Python poplib', { skip: skipUnlessCi(!HAVE_PYTHON && 'python3 with poplib not installed') }, () => {
  let s: RealServer;
  before(async () => {
    s = await startRealServer();
    s.addUser('alice', 'correct horse');
    s.addUser('apopuser', 'tanstaaf', ['--apop']);
    seed(s, 'alice');
    seed(s, 'apopuser');
    await s.start();
  });
  after(async () => {
    await s.stop();
  });

  test('USER/PASS, STAT, LIST, UIDL, TOP, RETR with Postfix-written mail (LF, no ,S=)', () => {
    const out = python(
      `
p = poplib.POP3('127.0.0.1', ARGS['port'], timeout=10)
p.user('alice'); p.pass_('correct horse')
stat = p.stat()
lst = p.list()[1]
uidl = p.uidl()[1]
top = p.top(2, 1)[1]
retr = [p.retr(i)[1] for i in (1, 2, 3)]
p.quit()
out = dict(stat=list(stat), list=[l.decode() for l in lst], uidl=[l.decode() for l in uidl],
           top=[l.decode() for l in top], retr=[[l.decode() for l in r] for r in retr])
`,
      { port: s.port },
    ) as { stat: number[]; list: string[]; uidl: string[]; top: string[]; retr: string[][] };
    const sizes = [MSG_A, MSG_B, `${MSG_C}\n`].map((m) => Buffer.byteLength(crlf(m)));
    assert.deepEqual(out.stat, [3, sizes[0] + sizes[1] + sizes[2]]);
    assert.deepEqual(
      out.list,
      sizes.map((n, i) => `${i + 1} ${n}`),
    );
    assert.equal(out.uidl.length, 3);
    assert.deepEqual(out.top, ['From: b@example.com', 'Subject: second', '', 'line 1']);
    assert.deepEqual(out.retr[0], MSG_A.split('\n').slice(0, -1));
    assert.deepEqual(out.retr[2], ['Subject: third', '', 'no final newline']);
  });

  test('DELE then QUIT removes exactly that message from the Maildir', () => {
    const before = readdirSync(join(s.maildir('alice'), 'new')).length;
    const out = python(
      `
p = poplib.POP3('127.0.0.1', ARGS['port'], timeout=10)
p.user('alice'); p.pass_('correct horse')
u = p.uidl(1).decode().split()[2]
p.dele(1)
p.quit()
p = poplib.POP3('127.0.0.1', ARGS['port'], timeout=10)
p.user('alice'); p.pass_('correct horse')
left = [l.decode().split()[1] for l in p.uidl()[1]]
p.quit()
out = dict(deleted=u, left=left)
`,
      { port: s.port },
    ) as { deleted: string; left: string[] };
    assert.equal(out.left.length, 2);
    assert.ok(!out.left.includes(out.deleted));
    const files = readdirSync(join(s.maildir('alice'), 'new')).concat(readdirSync(join(s.maildir('alice'), 'cur')));
    assert.equal(files.length, before - 1);
  });

  test('wrong password raises error_proto with [AUTH]', () => {
    const out = python(
      `
p = poplib.POP3('127.0.0.1', ARGS['port'], timeout=10)
p.user('alice')
try:
    p.pass_('wrong')
    out = 'logged in'
except poplib.error_proto as e:
    out = e.args[0].decode()
`,
      { port: s.port },
    );
    assert.match(String(out), /^-ERR \[AUTH\]/);
  });

  test('APOP with a stored shared secret', () => {
    const out = python(
      `
p = poplib.POP3('127.0.0.1', ARGS['port'], timeout=10)
p.apop('apopuser', 'tanstaaf')
out = list(p.stat())
p.quit()
`,
      { port: s.port },
    );
    assert.equal((out as number[])[0], 3);
  });

  test('STLS upgrade, then login over TLS; capa() before and after', () => {
    const out = python(
      `
p = poplib.POP3('127.0.0.1', ARGS['port'], timeout=10)
before = sorted(p.capa().keys())
p.stls(context=ctx)
after = sorted(p.capa().keys())
p.user('apopuser'); p.pass_('tanstaaf')
n = p.stat()[0]
p.quit()
out = dict(before=before, after=after, n=n)
`,
      { port: s.port },
    ) as { before: string[]; after: string[]; n: number };
    assert.ok(out.before.includes('STLS'));
    assert.ok(!out.after.includes('STLS'));
    assert.ok(out.after.includes('UIDL') && out.after.includes('TOP'));
    assert.equal(out.n, 3);
  });

  test('POP3_SSL on the implicit-TLS port', () => {
    const out = python(
      `
p = poplib.POP3_SSL('127.0.0.1', ARGS['port'], context=ctx, timeout=10)
p.user('apopuser'); p.pass_('tanstaaf')
out = dict(stat=list(p.stat()), version=p.sock.version())
p.quit()
`,
      { port: s.tlsPort },
    ) as { stat: number[]; version: string };
    assert.equal(out.stat[0], 3);
    assert.match(out.version, /^TLSv1\.[23]$/);
  });
});

describe('interop: curl', { skip: skipUnlessCi(!HAVE_CURL && 'curl not installed') }, () => {
  let s: RealServer;
  before(async () => {
    s = await startRealServer();
    s.addUser('bob', 's3cret pass');
    seed(s, 'bob');
    await s.start();
  });
  after(async () => {
    await s.stop();
  });

  const auth = 'bob:s3cret%20pass';

  test('pop3s:// retrieves message 1 (implicit TLS)', () => {
    const r = curl(['-k', `pop3s://${auth}@127.0.0.1:${s.tlsPort}/1`]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, crlf(MSG_A));
  });

  test('pop3:// lists messages', () => {
    const r = curl([`pop3://${auth}@127.0.0.1:${s.port}/`]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(
      r.stdout
        .trim()
        .split(/\r?\n/)
        .map((l) => l.split(' ')[0]),
      ['1', '2', '3'],
    );
  });

  test('pop3:// with --ssl-reqd upgrades with STLS and retrieves', () => {
    const r = curl(['-k', '--ssl-reqd', `pop3://${auth}@127.0.0.1:${s.port}/2`]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, crlf(MSG_B));
  });

  test('wrong password fails with a login error', () => {
    const r = curl([`pop3://bob:nope@127.0.0.1:${s.port}/`]);
    assert.equal(r.status, 67, `curl exit ${r.status}: ${r.stderr}`); // CURLE_LOGIN_DENIED
  });

  test('DELE via -X removes the message at QUIT', () => {
    const r = curl(['-k', '-I', '-X', 'DELE 3', `pop3s://${auth}@127.0.0.1:${s.tlsPort}/`]);
    assert.equal(r.status, 0, r.stderr);
    const l = curl(['-k', `pop3s://${auth}@127.0.0.1:${s.tlsPort}/`]);
    assert.deepEqual(
      l.stdout
        .trim()
        .split(/\r?\n/)
        .map((x) => x.split(' ')[0]),
      ['1', '2'],
    );
  });
});

describe('operations: the real process', () => {
  test('failed logins are logged for fail2ban (the README filter matches), passwords never', async () => {
    const s = await startRealServer({ limits: 'max_auth_failures = 5' });
    try {
      s.addUser('carol', 'right-password');
      await s.start();
      const w = await Wire.connect(s.port);
      await w.line();
      await w.cmd('USER carol');
      assert.match(await w.cmd('PASS wrong-password-XYZ'), /^-ERR \[AUTH\]/);
      await w.cmd('USER nosuchuser');
      assert.match(await w.cmd('PASS another-secret-ABC'), /^-ERR \[AUTH\]/);
      await w.cmd('USER carol');
      assert.match(await w.cmd('PASS right-password'), /^\+OK/);
      await w.cmd('QUIT');
      await w.closed();
      // The filter from README.md, with fail2ban's <HOST> replaced by a capture group.
      const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
      const failregex = /^failregex = (.*)$/m.exec(readme)?.[1];
      assert.ok(failregex, 'README has a failregex');
      const re = new RegExp(failregex.replace('<HOST>', '(?<host>[0-9a-fA-F.:]+)'));
      const deadline = Date.now() + 5000;
      let hits: RegExpExecArray[] = [];
      while (Date.now() < deadline) {
        hits = s
          .logs()
          .split('\n')
          .map((l) => re.exec(l))
          .filter((m): m is RegExpExecArray => m !== null);
        if (hits.length >= 2 && s.logs().includes('"msg":"disconnect"')) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(hits.length, 2);
      for (const h of hits) assert.equal(h.groups?.host, '127.0.0.1');
      const logs = s.logs();
      for (const secret of ['wrong-password-XYZ', 'another-secret-ABC', 'right-password']) {
        assert.ok(!logs.includes(secret), `log contains ${secret}`);
      }
      assert.match(logs, /"msg":"login"/);
      assert.match(logs, /"msg":"disconnect"/);
    } finally {
      await s.stop();
    }
  });

  test('SIGTERM: open sessions get -ERR [SYS/TEMP] after the grace period and nothing is deleted', async () => {
    const s = await startRealServer({ limits: 'shutdown_grace = 0.3' });
    let stopped = false;
    try {
      s.addUser('dave', 'pw');
      seed(s, 'dave');
      await s.start();
      const w = await Wire.connect(s.port);
      await w.line();
      await w.cmd('USER dave');
      await w.cmd('PASS pw');
      assert.match(await w.cmd('DELE 1'), /^\+OK/);
      const maildir = s.maildir('dave');
      const code = s.stop();
      stopped = true;
      assert.match(await w.line(), /^-ERR \[SYS\/TEMP\] Server shutting down/);
      await w.closed();
      const files = readdirSync(join(maildir, 'new')).concat(readdirSync(join(maildir, 'cur')));
      assert.equal(files.length, 3);
      assert.equal(await code, 0);
    } finally {
      if (!stopped) await s.stop();
    }
  });
});

describe('interop: SASL and RFC 6856 with real clients', () => {
  let s: RealServer;
  let script: string;
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postern-oauth-'));
    script = join(dir, 'check-token.sh');
    // The token command: token on stdin, user name on stdout (README, "OAuth").
    writeFileSync(script, '#!/bin/sh\nread -r token\n[ "$token" = "good-token-123" ] && echo frank\n', { mode: 0o755 });
    s = await startRealServer({ extraConfig: `[oauth]\ncommand = ["${script}"]\n` });
    s.addUser('frank', 'fr4nk pass', ['--apop']);
    s.addUser('jürgen', 'pässwörd');
    seed(s, 'frank');
    await s.start();
  });
  after(async () => {
    await s.stop();
    rmSync(dirname(script), { recursive: true, force: true });
  });

  // Debian's curl has no SCRAM (it needs libgsasl); SCRAM-SHA-256 is covered by test/server/sasl.test.ts
  // and by the RFC 7677 vectors in test/sasl/.
  for (const mech of ['PLAIN', 'LOGIN', 'CRAM-MD5']) {
    test(`curl --login-options AUTH=${mech}`, { skip: skipUnlessCi(!HAVE_CURL && 'curl not installed') }, async () => {
      const r = curl(['-k', '--login-options', `AUTH=${mech}`, `pop3s://frank:fr4nk%20pass@127.0.0.1:${s.tlsPort}/`]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim().split(/\r?\n/).length, 3);
      const deadline = Date.now() + 5000;
      while (!s.logs().includes(`"mechanism":"${mech}"`) && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 50));
      }
      // The login line names the mechanism and the maildrop it opened (field order is the logger's business).
      const login = s
        .logs()
        .split('\n')
        .find((l) => l.includes('"msg":"login"') && l.includes(`"mechanism":"${mech}"`));
      assert.ok(login, `no login line for ${mech}`);
      assert.match(login, /"messages":3[,}]/);
    });
  }

  for (const mech of ['OAUTHBEARER', 'XOAUTH2']) {
    test(`curl --oauth2-bearer with AUTH=${mech}`, { skip: skipUnlessCi(!HAVE_CURL && 'curl not installed') }, () => {
      const ok = curl([
        '-k',
        '--login-options',
        `AUTH=${mech}`,
        '--oauth2-bearer',
        'good-token-123',
        '--user',
        'frank:',
        `pop3s://127.0.0.1:${s.tlsPort}/`,
      ]);
      assert.equal(ok.status, 0, ok.stderr);
      assert.equal(ok.stdout.trim().split(/\r?\n/).length, 3);
      const bad = curl([
        '-k',
        '--login-options',
        `AUTH=${mech}`,
        '--oauth2-bearer',
        'bad-token',
        '--user',
        'frank:',
        `pop3s://127.0.0.1:${s.tlsPort}/`,
      ]);
      assert.notEqual(bad.status, 0);
    });
  }

  test('poplib utf8(), then a UTF-8 user name and password', {
    skip: skipUnlessCi(!HAVE_PYTHON && 'no python3'),
  }, () => {
    const out = python(
      `
p = poplib.POP3('127.0.0.1', ARGS['port'], timeout=10)
caps = p.capa()
r = p.utf8().decode()
p.user('jürgen'); p.pass_('pässwörd')
n = p.stat()[0]
p.quit()
out = dict(caps=sorted(caps.keys()), utf8=r, n=n, utf8args=caps.get('UTF8'))
`,
      { port: s.port },
    ) as { caps: string[]; utf8: string; n: number; utf8args: string[] };
    assert.ok(out.caps.includes('UTF8') && out.caps.includes('LANG'));
    assert.deepEqual(out.utf8args, ['USER']);
    assert.match(out.utf8, /^\+OK/);
    assert.equal(out.n, 0);
  });
});

describe('operations: SIGHUP', () => {
  test('reloads the certificate and the user file; an open session goes on', async () => {
    const s = await startRealServer();
    try {
      s.addUser('gina', 'pw1');
      await s.start();
      const cn = (servername?: string) =>
        new Promise<string>((resolve, reject) => {
          const sock = tlsConnect({ port: s.tlsPort, host: '127.0.0.1', rejectUnauthorized: false, servername });
          sock.once('secureConnect', () => {
            resolve(String(sock.getPeerCertificate().subject?.CN));
            sock.destroy();
          });
          sock.once('error', reject);
        });
      assert.equal(await cn(), 'localhost');
      const open = await Wire.connect(s.port);
      await open.line();
      assert.match(await open.cmd('USER gina'), /^\+OK/);
      const fresh = await generate([{ name: 'commonName', value: 'renewed.example' }], {
        keyType: 'ec',
        curve: 'P-256',
      });
      writeFileSync(join(s.dir, 'tls', 'cert.pem'), fresh.cert);
      writeFileSync(join(s.dir, 'tls', 'key.pem'), fresh.private);
      s.addUser('hank', 'pw2');
      s.signal('SIGHUP');
      const deadline = Date.now() + 10_000;
      let now = '';
      for (;;) {
        now = await cn();
        if (now === 'renewed.example' || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(now, 'renewed.example');
      assert.match(await open.cmd('PASS pw1'), /^\+OK/); // the session opened before the reload goes on
      await open.cmd('QUIT');
      const w = await Wire.connect(s.port);
      await w.line();
      await w.cmd('USER hank');
      assert.match(await w.cmd('PASS pw2'), /^\+OK/);
      await w.cmd('QUIT');
    } finally {
      await s.stop();
    }
  });
});
