/**
 * Transcript tests: exact bytes to the server and exact replies back, one behaviour each (RFC 1939, 2449,
 * 3206). The server is real (sockets on 127.0.0.1); the store is the in-memory one. Every test gets a server
 * and a maildrop of its own (beforeEach), so a test that fails (and leaves a session holding the lock) cannot
 * turn the tests after it into a row of [IN-USE] failures that hide the cause.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { MemoryStore } from '../../src/storage/memory/store.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { Wire } from '../helpers/wire.ts';

const M1 = 'From: a@example.com\r\nSubject: one\r\n\r\nHello\r\n';
const M2 = 'Subject: two\n\n.dot first\nline\n..two dots\n.\nend'; // bare LF, no final newline
const M3 = 'Subject: three\r\nX-A: 1\r\n\r\nl1\r\nl2\r\nl3\r\n';

/** What a client must receive for M2: CRLF repaired, final line ending added, dots stuffed. */
const M2_WIRE = 'Subject: two\r\n\r\n..dot first\r\nline\r\n...two dots\r\n..\r\nend\r\n.\r\n';
const M2_SIZE = Buffer.byteLength('Subject: two\r\n\r\n.dot first\r\nline\r\n..two dots\r\n.\r\nend\r\n');

async function login(port: number, user = 'alice', pass = 'wonderland'): Promise<Wire> {
  const w = await Wire.connect(port);
  assert.match(await w.line(), /^\+OK /);
  assert.match(await w.cmd(`USER ${user}`), /^\+OK/);
  assert.match(await w.cmd(`PASS ${pass}`), /^\+OK/);
  return w;
}

function seed(store: MemoryStore, user = 'alice'): void {
  store.add(user, M1);
  store.add(user, M2);
  store.add(user, M3);
}

describe('POP3 transcripts', () => {
  let t: TestServer;
  beforeEach(async () => {
    t = await startTestServer({
      users: { alice: { password: 'wonderland' }, bob: { password: 'pass with  spaces ' } },
    });
  });
  afterEach(() => t.close());

  test('greeting is +OK and has no APOP timestamp when no user has a shared secret', async () => {
    const w = await Wire.connect(t.port);
    const g = await w.line();
    assert.equal(g, '+OK Postern test server ready.');
    assert.match(await w.cmd('APOP alice 0123456789abcdef0123456789abcdef'), /^-ERR /);
    assert.equal(await w.cmd('QUIT'), '+OK Bye.');
    await w.closed();
  });

  test('USER/PASS logs in; the password is the rest of the line, spaces included', async () => {
    const w = await Wire.connect(t.port);
    await w.line();
    assert.equal(await w.cmd('USER bob'), '+OK Send your password.');
    assert.match(await w.cmd('PASS pass with  spaces '), /^\+OK Logged in, 0 messages \(0 octets\)\./);
    assert.match(await w.cmd('QUIT'), /^\+OK/);
  });

  test('wrong password and unknown user get the same [AUTH] reply', async () => {
    const w = await Wire.connect(t.port);
    await w.line();
    await w.cmd('USER alice');
    const wrong = await w.cmd('PASS nope');
    await w.cmd('USER nobody');
    const unknown = await w.cmd('PASS nope');
    assert.equal(wrong, '-ERR [AUTH] Authentication failed.');
    assert.equal(unknown, wrong);
    w.destroy();
  });

  test('PASS without USER, and commands in the wrong state, are refused and the session goes on', async () => {
    const w = await Wire.connect(t.port);
    await w.line();
    assert.match(await w.cmd('PASS x'), /^-ERR Send USER first/);
    assert.match(await w.cmd('STAT'), /^-ERR STAT is not valid in the AUTHORIZATION state/);
    assert.match(await w.cmd('RETR 1'), /^-ERR /);
    assert.match(await w.cmd('USER alice'), /^\+OK/);
    assert.match(await w.cmd('PASS wonderland'), /^\+OK/);
    assert.match(await w.cmd('USER alice'), /^-ERR USER is not valid in the TRANSACTION state/);
    assert.match(await w.cmd('STLS'), /^-ERR /);
    assert.match(await w.cmd('NOOP'), /^\+OK/);
    await w.cmd('QUIT');
  });

  test('commands are case-insensitive', async () => {
    const w = await Wire.connect(t.port);
    await w.line();
    assert.match(await w.cmd('user alice'), /^\+OK/);
    assert.match(await w.cmd('pAsS wonderland'), /^\+OK/);
    assert.match(await w.cmd('stat'), /^\+OK 0 0$/);
    assert.match(await w.cmd('quit'), /^\+OK/);
  });
});

describe('TRANSACTION semantics', () => {
  let t: TestServer;
  beforeEach(async () => {
    t = await startTestServer();
  });
  afterEach(() => t.close());

  test('STAT, LIST and UIDL; sizes count CRLF and equal the bytes received', async () => {
    t.store.clear?.('alice');
    seed(t.store);
    const w = await login(t.port);
    const sizes = [Buffer.byteLength(M1), M2_SIZE, Buffer.byteLength(M3)];
    assert.equal(await w.cmd('STAT'), `+OK 3 ${sizes[0] + sizes[1] + sizes[2]}`);
    assert.match(await w.cmd('LIST'), /^\+OK 3 messages/);
    assert.deepEqual(await w.lines(), [`1 ${sizes[0]}`, `2 ${sizes[1]}`, `3 ${sizes[2]}`]);
    assert.equal(await w.cmd('LIST 2'), `+OK 2 ${sizes[1]}`);
    assert.match(await w.cmd('UIDL'), /^\+OK/);
    const uidls = await w.lines();
    assert.equal(uidls.length, 3);
    for (const [i, l] of uidls.entries()) {
      const [n, u] = l.split(' ');
      assert.equal(n, String(i + 1));
      assert.match(u, /^[\x21-\x7e]{1,70}$/);
    }
    assert.equal(await w.cmd('UIDL 3'), `+OK ${uidls[2]}`);
    // RETR: the received bytes before dot-stuffing equal the advertised size.
    assert.equal(await w.cmd('RETR 2'), `+OK ${sizes[1]} octets`);
    const body = (await w.body()).toString('latin1');
    assert.equal(body, M2_WIRE);
    assert.equal(await w.cmd('RETR 1'), `+OK ${sizes[0]} octets`);
    assert.equal((await w.body()).toString('latin1'), `${M1}.\r\n`);
    await w.cmd('QUIT');
  });

  test('message numbers are fixed after DELE; deleted messages are refused and left out of listings', async () => {
    t.store.clear?.('alice');
    seed(t.store);
    const w = await login(t.port);
    assert.equal(await w.cmd('DELE 2'), '+OK Message 2 deleted.');
    assert.equal(await w.cmd('DELE 2'), '-ERR Message 2 already deleted.');
    for (const c of ['RETR 2', 'TOP 2 0', 'LIST 2', 'UIDL 2']) {
      assert.equal(await w.cmd(c), '-ERR Message 2 already deleted.', c);
    }
    const s1 = Buffer.byteLength(M1);
    const s3 = Buffer.byteLength(M3);
    assert.equal(await w.cmd('STAT'), `+OK 2 ${s1 + s3}`);
    await w.cmd('LIST');
    assert.deepEqual(await w.lines(), [`1 ${s1}`, `3 ${s3}`]);
    await w.cmd('UIDL');
    assert.deepEqual(
      (await w.lines()).map((l) => l.split(' ')[0]),
      ['1', '3'],
    );
    assert.equal(await w.cmd('LIST 3'), `+OK 3 ${s3}`);
    assert.match(await w.cmd('RSET'), /^\+OK Maildrop has 3 messages/);
    assert.match(await w.cmd('LIST 2'), /^\+OK 2 /);
    w.destroy();
  });

  test('bad arguments get -ERR and the session goes on', async () => {
    t.store.clear?.('alice');
    seed(t.store);
    const w = await login(t.port);
    for (const c of [
      'LIST 0',
      'LIST 1x',
      'LIST -1',
      'LIST 4',
      'LIST 99999999999999999999999',
      'RETR',
      'RETR abc',
      'DELE 0',
      'TOP 1',
      'TOP 1 x',
      'TOP 1 -1',
      'TOP x 1',
      'UIDL 4',
    ]) {
      assert.match(await w.cmd(c), /^-ERR /, c);
    }
    assert.equal(await w.cmd('STAT').then((l) => l.startsWith('+OK 3 ')), true);
    await w.cmd('QUIT');
  });

  test('TOP n 0 sends the headers and the blank line only; TOP n k adds k body lines', async () => {
    t.store.clear?.('alice');
    seed(t.store);
    const w = await login(t.port);
    assert.match(await w.cmd('TOP 3 0'), /^\+OK/);
    assert.equal((await w.body()).toString(), 'Subject: three\r\nX-A: 1\r\n\r\n.\r\n');
    assert.match(await w.cmd('TOP 3 2'), /^\+OK/);
    assert.equal((await w.body()).toString(), 'Subject: three\r\nX-A: 1\r\n\r\nl1\r\nl2\r\n.\r\n');
    assert.match(await w.cmd('TOP 3 100'), /^\+OK/);
    assert.equal((await w.body()).toString(), `${M3}.\r\n`);
    assert.match(await w.cmd('TOP 2 1'), /^\+OK/);
    assert.equal((await w.body()).toString(), 'Subject: two\r\n\r\n..dot first\r\n.\r\n');
    await w.cmd('QUIT');
  });

  test('QUIT commits exactly the deleted messages; +OK only after the commit', async () => {
    t.store.clear?.('alice');
    seed(t.store);
    const w = await login(t.port);
    await w.cmd('DELE 1');
    await w.cmd('DELE 3');
    assert.equal(await w.cmd('QUIT'), '+OK Logging out, 2 deleted, 1 left.');
    await w.closed();
    const left = t.store.list('alice');
    assert.equal(left.length, 1);
    assert.equal(left[0].content.toString(), M2);
  });

  test('a dropped connection deletes nothing and releases the lock', async () => {
    t.store.clear?.('alice');
    seed(t.store);
    const w = await login(t.port);
    await w.cmd('DELE 1');
    w.destroy();
    // The lock is released asynchronously: the next login must succeed within a bounded wait.
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      const w2 = await Wire.connect(t.port);
      await w2.line();
      await w2.cmd('USER alice');
      const r = await w2.cmd('PASS wonderland');
      ok = r.startsWith('+OK');
      if (ok) assert.match(await w2.cmd('STAT'), /^\+OK 3 /);
      await w2.cmd('QUIT');
      if (!ok) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(ok);
    assert.equal(t.store.list('alice').length, 3);
  });

  test('RSET then QUIT deletes nothing', async () => {
    t.store.clear?.('alice');
    seed(t.store);
    const w = await login(t.port);
    await w.cmd('DELE 1');
    await w.cmd('RSET');
    assert.equal(await w.cmd('QUIT'), '+OK Logging out, 0 deleted, 3 left.');
    assert.equal(t.store.list('alice').length, 3);
  });

  test('a second session on a locked maildrop gets [IN-USE]', async () => {
    t.store.clear?.('alice');
    seed(t.store);
    const w = await login(t.port);
    const w2 = await Wire.connect(t.port);
    await w2.line();
    await w2.cmd('USER alice');
    assert.equal(await w2.cmd('PASS wonderland'), '-ERR [IN-USE] Mailbox is locked by another POP3 session.');
    // Still in AUTHORIZATION: it can try again once the first session has quit.
    await w.cmd('QUIT');
    await w.closed();
    await w2.cmd('USER alice');
    assert.match(await w2.cmd('PASS wonderland'), /^\+OK/);
    await w2.cmd('QUIT');
  });

  test('mail delivered during a session is not shown in it and appears in the next', async () => {
    t.store.clear?.('alice');
    seed(t.store);
    const w = await login(t.port);
    t.store.add('alice', 'Subject: late\r\n\r\nlate\r\n');
    assert.match(await w.cmd('STAT'), /^\+OK 3 /);
    assert.match(await w.cmd('LIST 4'), /^-ERR /);
    await w.cmd('DELE 1');
    await w.cmd('QUIT');
    await w.closed();
    const w2 = await login(t.port);
    assert.match(await w2.cmd('STAT'), /^\+OK 3 /);
    assert.match(await w2.cmd('TOP 3 0'), /^\+OK/);
    assert.equal((await w2.body()).toString(), 'Subject: late\r\n\r\n.\r\n');
    await w2.cmd('QUIT');
  });

  test('pipelined commands sent in one write are all answered, in order', async () => {
    t.store.clear?.('alice');
    seed(t.store);
    const w = await Wire.connect(t.port);
    await w.line();
    w.send('USER alice\r\nPASS wonderland\r\nSTAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nLIST 1\r\nNOOP\r\nUIDL 2\r\nQUIT\r\n');
    assert.match(await w.line(), /^\+OK Send/);
    assert.match(await w.line(), /^\+OK Logged in/);
    assert.match(await w.line(), /^\+OK 3 /);
    assert.match(await w.line(), /^\+OK 3 messages/);
    assert.equal((await w.lines()).length, 3);
    assert.match(await w.line(), /^\+OK \d+ octets/);
    assert.equal((await w.body()).toString(), `${M1}.\r\n`);
    assert.equal(await w.line(), '+OK Message 1 deleted.');
    assert.equal(await w.line(), '-ERR Message 1 already deleted.');
    assert.equal(await w.line(), '+OK');
    assert.match(await w.line(), /^\+OK 2 \S+$/);
    assert.match(await w.line(), /^\+OK Logging out, 1 deleted/);
    await w.closed();
  });

  test('a failed commit answers -ERR [SYS/TEMP] and deletes nothing', async () => {
    t.store.clear?.('alice');
    seed(t.store);
    const w = await login(t.port);
    await w.cmd('DELE 1');
    t.store.faults.failCommit = 'temp';
    try {
      assert.match(await w.cmd('QUIT'), /^-ERR \[SYS\/TEMP\] /);
    } finally {
      t.store.faults.failCommit = undefined;
    }
    await w.closed();
    assert.equal(t.store.list('alice').length, 3);
  });

  test('a store failure at login answers [SYS/TEMP] and stays in AUTHORIZATION', async () => {
    const w = await Wire.connect(t.port);
    await w.line();
    await w.cmd('USER alice');
    t.store.faults.failOpenMaildrop = 'temp';
    try {
      assert.match(await w.cmd('PASS wonderland'), /^-ERR \[SYS\/TEMP\] /);
    } finally {
      t.store.faults.failOpenMaildrop = undefined;
    }
    assert.match(await w.cmd('STAT'), /^-ERR /);
    await w.cmd('USER alice');
    assert.match(await w.cmd('PASS wonderland'), /^\+OK/);
    await w.cmd('QUIT');
  });
});

describe('CAPA, STLS and TLS', () => {
  let t: TestServer;
  beforeEach(async () => {
    t = await startTestServer();
  });
  afterEach(() => t.close());

  test('CAPA lists STLS, USER and SASL before login, and the same after (RFC 2449 §5)', async () => {
    const w = await Wire.connect(t.port);
    await w.line();
    assert.match(await w.cmd('CAPA'), /^\+OK/);
    const caps = await w.lines();
    for (const c of ['TOP', 'UIDL', 'USER', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING', 'STLS']) {
      assert.ok(caps.includes(c), `${c} in ${caps}`);
    }
    assert.ok(caps.some((c) => c.startsWith('IMPLEMENTATION ')));
    await w.cmd('USER alice');
    await w.cmd('PASS wonderland');
    await w.cmd('CAPA');
    const caps2 = await w.lines();
    // "Capabilities available in the AUTHORIZATION state MUST be announced in both states" (issue 13 #7).
    const authorization = (list: string[]) =>
      list.filter((c) => c === 'USER' || c === 'STLS' || c.startsWith('SASL ')).sort();
    assert.equal(authorization(caps).length, 3, `${caps}`);
    assert.deepEqual(authorization(caps2), authorization(caps));
    assert.ok(caps2.includes('TOP'));
    await w.cmd('QUIT');
  });

  test('STLS upgrades; bytes sent after STLS in the same packet are discarded, never executed', async () => {
    const w = await Wire.connect(t.port);
    await w.line();
    // An injected command riding in the same packet as STLS (CVE-2011-0411 class).
    w.send('STLS\r\nCAPA\r\n');
    assert.equal(await w.line(), '+OK Begin TLS negotiation now.');
    await w.startTls();
    // If the injected CAPA had run, its reply would arrive now, before the reply to our NOOP-like command.
    assert.match(await w.cmd('USER alice'), /^\+OK/);
    assert.match(await w.cmd('PASS wonderland'), /^\+OK/);
    assert.equal(w.pending(), '');
    assert.match(await w.cmd('CAPA'), /^\+OK/);
    assert.ok(!(await w.lines()).includes('STLS'));
    await w.cmd('QUIT');
  });

  test('STLS twice is refused', async () => {
    const w = await Wire.connect(t.port);
    await w.line();
    await w.cmd('STLS');
    await w.startTls();
    assert.match(await w.cmd('STLS'), /^-ERR TLS is already active/);
    await w.cmd('QUIT');
  });

  test('implicit TLS (RFC 8314) greets over TLS 1.2 or newer and serves mail', async () => {
    t.store.clear?.('alice');
    seed(t.store);
    const w = await Wire.connect(t.tlsPort, { tls: true });
    assert.match(await w.line(), /^\+OK/);
    const proto = (w.socket as import('node:tls').TLSSocket).getProtocol();
    assert.ok(proto === 'TLSv1.2' || proto === 'TLSv1.3', String(proto));
    await w.cmd('CAPA');
    assert.ok(!(await w.lines()).includes('STLS'));
    assert.match(await w.cmd('USER alice'), /^\+OK/);
    assert.match(await w.cmd('PASS wonderland'), /^\+OK Logged in, 3 messages/);
    await w.cmd('QUIT');
  });

  test('a TLS 1.1 client is refused', async () => {
    const { connect } = await import('node:tls');
    const err = await new Promise<Error | null>((resolve) => {
      const s = connect({
        port: t.tlsPort,
        host: '127.0.0.1',
        rejectUnauthorized: false,
        maxVersion: 'TLSv1.1',
        ciphers: 'DEFAULT@SECLEVEL=0',
        minVersion: 'TLSv1',
      });
      s.once('secureConnect', () => {
        s.destroy();
        resolve(null);
      });
      s.once('error', (e) => resolve(e));
    });
    assert.ok(err, 'handshake with TLS 1.1 must fail');
  });
});

describe('plaintext policy', () => {
  let t: TestServer;
  beforeEach(async () => {
    // Loopback not trusted: the connection counts as a remote, unencrypted one.
    t = await startTestServer({ server: { loopbackIsSecure: false } });
  });
  afterEach(() => t.close());

  test('USER/PASS are refused and not advertised before TLS, and work after STLS', async () => {
    const w = await Wire.connect(t.port);
    await w.line();
    await w.cmd('CAPA');
    const caps = await w.lines();
    assert.ok(!caps.includes('USER') && caps.includes('STLS'));
    assert.match(await w.cmd('USER alice'), /^-ERR \[AUTH\] Plaintext authentication disallowed/);
    assert.match(await w.cmd('PASS wonderland'), /^-ERR \[AUTH\]/);
    assert.equal(await w.cmd('STLS'), '+OK Begin TLS negotiation now.');
    await w.startTls();
    await w.cmd('CAPA');
    assert.ok((await w.lines()).includes('USER'));
    assert.match(await w.cmd('USER alice'), /^\+OK/);
    assert.match(await w.cmd('PASS wonderland'), /^\+OK/);
    await w.cmd('QUIT');
  });
});

describe('APOP', () => {
  let t: TestServer;
  beforeEach(async () => {
    t = await startTestServer({
      users: { alice: { password: 'wonderland', secret: 'tanstaaf' }, carol: { password: 'x' } },
    });
  });
  afterEach(() => t.close());

  test('the greeting carries a fresh <…@…> timestamp; a correct digest logs in', async () => {
    const w = await Wire.connect(t.port);
    const g = await w.line();
    const m = /(<[^<>]+@[^<>]+>)$/.exec(g);
    assert.ok(m, g);
    const w2 = await Wire.connect(t.port);
    assert.notEqual(await w2.line(), g);
    w2.destroy();
    const digest = createHash('md5').update(`${m[1]}tanstaaf`).digest('hex');
    assert.match(await w.cmd(`APOP alice ${'0'.repeat(32)}`), /^-ERR \[AUTH\]/);
    assert.match(await w.cmd(`APOP alice ${digest}`), /^\+OK Logged in/);
    await w.cmd('QUIT');
  });

  test('a user without a shared secret cannot use APOP', async () => {
    const w = await Wire.connect(t.port);
    const g = await w.line();
    const ts = /(<[^<>]+>)$/.exec(g)![1];
    const digest = createHash('md5').update(`${ts}x`).digest('hex');
    assert.match(await w.cmd(`APOP carol ${digest}`), /^-ERR \[AUTH\]/);
    w.destroy();
  });
});

describe('limits', () => {
  test('unknown commands get -ERR; the connection closes after too many in a row', async () => {
    const t = await startTestServer({ limits: { maxBadCommands: 3 } });
    try {
      const w = await Wire.connect(t.port);
      await w.line();
      assert.equal(await w.cmd('FOO'), '-ERR Unknown command.');
      assert.equal(await w.cmd('BAR baz'), '-ERR Unknown command.');
      assert.match(await w.cmd('USER alice'), /^\+OK/); // a good command resets the count
      assert.equal(await w.cmd('XYZZY'), '-ERR Unknown command.');
      assert.equal(await w.cmd('FOO'), '-ERR Unknown command.');
      assert.equal(await w.cmd('FOO'), '-ERR Unknown command.');
      assert.match(await w.line(), /^-ERR Too many bad commands/);
      await w.closed();
    } finally {
      await t.close();
    }
  });

  test('an overlong line gets -ERR and the next command still works', async () => {
    const t = await startTestServer({ limits: { maxLineLength: 300 } });
    try {
      const w = await Wire.connect(t.port);
      await w.line();
      assert.match(await w.cmd(`USER ${'x'.repeat(5000)}`), /^-ERR Line too long/);
      assert.match(await w.cmd('USER alice'), /^\+OK/);
      assert.match(await w.cmd('PASS wonderland'), /^\+OK/);
      await w.cmd('QUIT');
    } finally {
      await t.close();
    }
  });

  test('failed logins close the connection after max_auth_failures and are delayed', async () => {
    const t = await startTestServer({
      limits: { maxAuthFailures: 2, failedLoginDelayMs: 100, failedLoginMaxDelayMs: 150 },
    });
    try {
      const w = await Wire.connect(t.port);
      await w.line();
      await w.cmd('USER alice');
      const t0 = Date.now();
      assert.match(await w.cmd('PASS bad'), /^-ERR \[AUTH\]/);
      assert.ok(Date.now() - t0 >= 90, 'first failure delayed');
      await w.cmd('USER nobody');
      assert.match(await w.cmd('PASS bad'), /^-ERR \[AUTH\]/);
      assert.match(await w.line(), /^-ERR Too many failed logins/);
      await w.closed();
    } finally {
      await t.close();
    }
  });

  test('connections beyond the per-address limit are refused with -ERR', async () => {
    const t = await startTestServer({ limits: { maxConnectionsPerAddress: 2 } });
    try {
      const a = await Wire.connect(t.port);
      const b = await Wire.connect(t.port);
      await a.line();
      await b.line();
      const c = await Wire.connect(t.port);
      assert.match(await c.line(), /^-ERR \[SYS\/TEMP\] too many connections/);
      await c.closed();
      a.destroy();
      await a.closed();
      // Once one is gone, a new connection is accepted (bounded retry while the close is processed).
      let ok = false;
      for (let i = 0; i < 50 && !ok; i++) {
        const d = await Wire.connect(t.port);
        ok = (await d.line()).startsWith('+OK');
        d.destroy();
        if (!ok) await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(ok);
      b.destroy();
    } finally {
      await t.close();
    }
  });

  test('idle timeout closes the session without deleting anything', async () => {
    const store = new MemoryStore();
    seed(store);
    const t = await startTestServer({ store, limits: { idleTimeoutMs: 200, idleTimeoutAuthMs: 200 } });
    try {
      const w = await login(t.port);
      await w.cmd('DELE 1');
      assert.equal(await w.line(2000), '-ERR Disconnected for inactivity.');
      await w.closed();
      assert.equal(store.list('alice').length, 3);
    } finally {
      await t.close();
    }
  });

  test('shutdown closes open sessions with [SYS/TEMP] and deletes nothing', async () => {
    const store = new MemoryStore();
    seed(store);
    const t = await startTestServer({ store });
    const w = await login(t.port);
    await w.cmd('DELE 1');
    await t.server.close(50);
    assert.match(await w.line(), /^-ERR \[SYS\/TEMP\] Server shutting down/);
    await w.closed();
    assert.equal(store.list('alice').length, 3);
  });
});

describe('RFC 6856 UTF8 and LANG', () => {
  let t: TestServer;
  beforeEach(async () => {
    t = await startTestServer({ users: { jürgen: { password: 'pässwörd ✓' } } });
  });
  afterEach(() => t.close());

  test('CAPA lists UTF8 USER and LANG; UTF8 is accepted in AUTHORIZATION only', async () => {
    const w = await Wire.connect(t.port);
    await w.line();
    await w.cmd('CAPA');
    const caps = await w.lines();
    assert.ok(caps.includes('UTF8 USER') && caps.includes('LANG'), String(caps));
    assert.equal(await w.cmd('UTF8'), '+OK UTF-8 enabled.');
    assert.match(await w.cmd('USER jürgen'), /^\+OK/);
    assert.match(await w.cmd('PASS pässwörd ✓'), /^\+OK Logged in/);
    assert.match(await w.cmd('UTF8'), /^-ERR /);
    await w.cmd('QUIT');
  });

  test('LANG lists languages, switches reply texts, refuses unknown tags; * restores the default', async () => {
    const w = await Wire.connect(t.port);
    await w.line();
    assert.match(await w.cmd('LANG'), /^\+OK /);
    const langs = await w.lines();
    assert.ok(langs.includes('en English') && langs.includes('de Deutsch'), String(langs));
    assert.equal(await w.cmd('LANG de-AT'), '+OK de Sprache auf Deutsch umgestellt.');
    assert.equal(await w.cmd('FOO'), '-ERR Unbekannter Befehl.');
    assert.equal(await w.cmd('USER jürgen'), '+OK Bitte das Passwort senden.');
    assert.equal(await w.cmd('PASS falsch'), '-ERR [AUTH] Anmeldung fehlgeschlagen.');
    assert.match(await w.cmd('LANG xx'), /^-ERR Sprache wird nicht unterstützt/);
    assert.equal(await w.cmd('LANG *'), '+OK en Language changed to English.');
    assert.equal(await w.cmd('FOO'), '-ERR Unknown command.');
    w.destroy();
  });
});

describe('large messages take the streaming path', () => {
  test('a 300 KB message with dots at every chunk boundary arrives exactly, sized as announced', async () => {
    const store = new MemoryStore({ chunkSize: 4096 });
    // Lines of 4095 bytes + LF: every 4 KiB chunk starts with a line that starts with a dot.
    const line = `.${'x'.repeat(4094)}\n`;
    const body = `Subject: big\n\n${line.repeat(75)}.\n..\nend`;
    store.add('alice', body);
    const t = await startTestServer({ store });
    try {
      const w = await login(t.port);
      const expected = body.replace(/\n/g, '\r\n').concat('\r\n');
      assert.equal(await w.cmd('LIST 1'), `+OK 1 ${Buffer.byteLength(expected)}`);
      assert.equal(await w.cmd('RETR 1'), `+OK ${Buffer.byteLength(expected)} octets`);
      const wire = (await w.body()).toString('latin1');
      const stuffed = expected.replace(/^\./gm, '..');
      assert.equal(wire, `${stuffed}.\r\n`);
      await w.cmd('QUIT');
    } finally {
      await t.close();
    }
  });

  test('a read failure mid-stream closes the connection and deletes nothing', async () => {
    const store = new MemoryStore({ chunkSize: 1024 });
    store.add('alice', `Subject: big\r\n\r\n${'y'.repeat(200_000)}\r\n`);
    store.faults.failReadAfterBytes = 50_000;
    const t = await startTestServer({ store });
    try {
      const w = await login(t.port);
      await w.cmd('DELE 1');
      await w.cmd('RSET');
      w.send('RETR 1\r\n');
      await w.closed();
      assert.ok(!w.pending().includes('\r\n.\r\n'), 'no terminator after a failed read');
      assert.equal(store.list('alice').length, 1);
    } finally {
      store.faults.failReadAfterBytes = undefined;
      await t.close();
    }
  });
});
