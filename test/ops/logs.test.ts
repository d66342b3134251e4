/**
 * What an operator reads in the log at the default level (issue 8): a POP3 login is one `login` line plus the
 * logout summary, an LMTP transaction one line (smtp-server's own chatter at debug, no key written twice), a
 * failed SASL PLAIN login names the user with the reason the README's fail2ban filter expects, and a
 * certificate that fails to reload is named.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { swaks } from '../delivery/helpers.ts';
import { commandWorks, skipUnlessCi } from '../helpers/peers.ts';
import { freePort, type RealServer, startRealServer } from '../helpers/realServer.ts';
import { Wire } from '../helpers/wire.ts';

const HAVE_SWAKS = commandWorks('swaks', ['--version']);

/** The log lines as parsed JSON, each checked to be one JSON object with no key written twice. */
function logLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      const parsed = JSON.parse(l) as Record<string, unknown>;
      const keys = [...l.matchAll(/[{,]"([^"]+)":/g)].map((m) => m[1]);
      const top = Object.keys(parsed);
      // A key pino wrote twice parses to one property: more top-level "key": occurrences than properties
      // (nested objects aside) would mean a duplicate.
      for (const k of top) {
        const n = keys.filter((x) => x === k).length;
        if (typeof parsed[k] !== 'object') assert.equal(n, 1, `key ${k} twice in ${l}`);
      }
      return parsed;
    });
}

async function waitFor(s: RealServer, pred: (lines: Record<string, unknown>[]) => boolean, what: string) {
  const deadline = Date.now() + 15_000;
  while (!pred(logLines(s.logs()))) {
    if (Date.now() > deadline) throw new Error(`log never showed ${what}:\n${s.logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('logs at the default level', { skip: skipUnlessCi(!HAVE_SWAKS && 'swaks is not installed') }, () => {
  let s: RealServer;
  let lmtpPort: number;

  before(async () => {
    lmtpPort = await freePort();
    s = await startRealServer({
      logLevel: 'info',
      extraConfig: `[lmtp]\naddress = "127.0.0.1"\nport = ${lmtpPort}\n`,
    });
    s.addUser('alice', 'alice-password');
    s.addUser('bob', 'bob-password');
    // bob's Maildir cannot be made: a file stands where its parent directory would be.
    mkdirSync(join(s.dir, 'mail'), { recursive: true });
    writeFileSync(join(s.dir, 'mail', 'bob'), '');
    await s.start();
  });
  after(() => s.stop());

  test('an LMTP transaction is one info line (plus one per refused recipient); the library logs nothing at info', async () => {
    const before = logLines(s.logs()).length;
    const r = await swaks([
      '--server',
      '127.0.0.1',
      '--port',
      String(lmtpPort),
      '--protocol',
      'LMTP',
      '--to',
      'alice@example.com,nobody@example.com',
    ]);
    assert.equal(r.code, 0, r.out);
    await waitFor(s, (ls) => ls.some((l) => l.msg === 'LMTP transaction'), 'the LMTP summary');
    const fresh = logLines(s.logs()).slice(before);
    assert.deepEqual(
      fresh.map((l) => l.msg),
      ['delivery refused: no such user', 'LMTP transaction'],
      s.logs(),
    );
    const line = fresh[1];
    assert.equal(line.protocol, 'lmtp');
    assert.equal(line.recipients, 1);
    assert.equal(line.delivered, 1);
    assert.ok(!s.logs().includes('Connection from'), 'no smtp-server chatter');
    assert.ok(!/listening on \[?null/.test(s.logs()));
  });

  test('a POP3 login over STLS: one login line and one logout summary, nothing else', async () => {
    const before = logLines(s.logs()).length;
    const w = await Wire.connect(s.port);
    await w.line();
    assert.match(await w.cmd('STLS'), /^\+OK/);
    await w.startTls();
    assert.match(await w.cmd('USER alice'), /^\+OK/);
    assert.match(await w.cmd('PASS alice-password'), /^\+OK/);
    assert.match(await w.cmd('QUIT'), /^\+OK/);
    w.destroy();
    await waitFor(s, (ls) => ls.slice(before).some((l) => l.msg === 'disconnect'), 'the disconnect line');
    const fresh = logLines(s.logs()).slice(before);
    assert.deepEqual(
      fresh.map((l) => l.msg),
      ['login', 'disconnect'],
    );
    assert.equal(fresh[0].user, 'alice');
    assert.equal(fresh[0].secure, true);
  });

  test('a failed AUTH PLAIN names the user, with the reason and shape the fail2ban filter matches', async () => {
    const before = s.logs().length;
    const w = await Wire.connect(s.port);
    await w.line();
    const payload = Buffer.from('\0alice\0wrong-password').toString('base64');
    assert.match(await w.cmd(`AUTH PLAIN ${payload}`), /^-ERR \[AUTH\]/);
    w.destroy();
    await waitFor(s, (ls) => ls.some((l) => l.msg === 'authentication failed'), 'the failure');
    const raw = s
      .logs()
      .slice(before)
      .split('\n')
      .find((l) => l.includes('"msg":"authentication failed"'));
    assert.ok(raw);
    const line = JSON.parse(raw) as Record<string, unknown>;
    assert.equal(line.user, 'alice');
    assert.equal(line.mechanism, 'PLAIN');
    assert.equal(line.reason, 'bad credentials');
    // The README's filter: failregex = ^\{.*"remote":"<HOST>".*"msg":"authentication failed"\}$
    assert.match(raw, /^\{.*"remote":"127\.0\.0\.1".*"msg":"authentication failed"\}$/);
    assert.ok(!raw.includes('wrong-password'));
  });

  test('a maildrop that cannot be created: the client gets [SYS/…], the log names the path', async () => {
    const w = await Wire.connect(s.port);
    await w.line();
    assert.match(await w.cmd('USER bob'), /^\+OK/);
    assert.match(await w.cmd('PASS bob-password'), /^-ERR \[SYS\/(TEMP|PERM)\]/);
    w.destroy();
    await waitFor(s, (ls) => ls.some((l) => l.msg === 'maildrop open failed'), 'the failure');
    const line = logLines(s.logs()).find((l) => l.msg === 'maildrop open failed');
    assert.equal(line?.user, 'bob');
    assert.ok(String(line?.err).includes(join(s.dir, 'mail', 'bob', 'Maildir')), String(line?.err));
  });

  test('a certificate that cannot be reloaded is named, and the old one stays in use', async () => {
    const cert = join(s.dir, 'tls', 'cert.pem');
    writeFileSync(cert, 'not a certificate\n');
    s.signal('SIGHUP');
    await waitFor(s, (ls) => ls.some((l) => l.msg === 'reload failed'), 'the reload failure');
    const line = logLines(s.logs()).find((l) => l.msg === 'reload failed');
    assert.match(String(line?.err), new RegExp(`tls\\.cert = "${cert.replaceAll('.', '\\.')}"`));
    const w = await Wire.connect(s.tlsPort, { tls: true });
    assert.match(await w.line(), /^\+OK/);
    w.destroy();
  });
});
