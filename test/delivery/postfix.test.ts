/**
 * Postfix for real (issue 8), wired as docs/delivery.md says: a private Postfix instance (its own
 * config_directory, queue_directory and data_directory in a temporary directory, SMTP on a loopback port; the
 * system's Postfix is not touched) hands mail for a virtual domain to a running `postern serve` over LMTP on a
 * Unix socket in a postern directory inside Postfix's queue directory (`virtual_transport =
 * lmtp:unix:postern/lmtp`), and mail for a second domain to `postern deliver` through a `pipe` transport that
 * runs as an unprivileged user. Recipients come from `virtual_mailbox_maps`, so an unknown one is refused at RCPT
 * and a Postern user with no Unix account is not. Messages go in by SMTP and by `sendmail`; each is read back
 * over POP3 byte for byte, and is stored with LF line endings.
 *
 * Differences from the documented Debian layout, both for a throwaway instance: the services run without
 * chroot (the socket path is relative to the queue directory either way), and the pipe user is `nobody` rather
 * than a `postern` account.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Pop3Client } from '../../src/client/index.ts';
import { commandWorks, skipUnlessCi } from '../helpers/peers.ts';
import { BIN, freePort, postern } from '../helpers/realServer.ts';
import { removeTempDir, tempDir } from '../helpers/tmp.ts';
import { swaks } from './helpers.ts';

const POSTFIX = '/usr/sbin/postfix';
const SENDMAIL = '/usr/sbin/sendmail';
const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;

function missing(): string | false {
  if (!existsSync(POSTFIX) || !existsSync(SENDMAIL)) return 'postfix is not installed';
  if (!isRoot) return 'a private Postfix instance needs root';
  if (!commandWorks('swaks', ['--version'])) return 'swaks is not installed';
  if (spawnSync('getent', ['group', 'postfix']).status !== 0) return 'no postfix group';
  return false;
}

/** A message with what breaks naive delivery: a dot line, a "From " line, 8-bit bytes, a long line. */
function message(subject: string, eol: string): Buffer {
  const lines = [
    'From: Bob <bob@example.net>',
    'To: alice@example.test',
    `Subject: ${subject}`,
    'Date: Mon, 30 Nov 2026 00:00:00 +0000',
    `Message-ID: <${subject.replaceAll(' ', '.')}@example.net>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    'Grüße aus Köln',
    '.',
    '.. two dots',
    'From the start of a line',
    'x'.repeat(900),
    '',
    'end',
    '',
  ];
  return Buffer.from(lines.join(eol), 'utf8');
}

/** The SMTP DATA form for swaks --no-data-fixup: CRLF, dot-stuffed, ending in "." (swaks adds the CRLF). */
function smtpData(msg: Buffer): Buffer {
  const stuffed = msg.toString('latin1').replace(/(^|\r\n)\./g, '$1..');
  return Buffer.from(`${stuffed}.`, 'latin1');
}

describe('Postfix → Postern, as docs/delivery.md sets it up', { skip: skipUnlessCi(missing()) }, () => {
  let dir: string;
  let etc: string;
  let smtpPort: number;
  let popPort: number;
  let server: ChildProcess | undefined;
  let serverLog = '';
  let postfixStarted = false;

  const postfix = (...args: string[]) =>
    spawnSync(POSTFIX, ['-c', etc, ...args], { encoding: 'utf8', timeout: 60_000 });
  const maillog = () => (existsSync(join(dir, 'postfix.log')) ? readFileSync(join(dir, 'postfix.log'), 'utf8') : '');

  before(async () => {
    dir = tempDir('postfix', { reachable: true });
    etc = join(dir, 'etc');
    const spool = join(dir, 'spool');
    const data = join(dir, 'data');
    const mail = join(dir, 'mail');
    for (const d of [etc, spool, data, mail]) mkdirSync(d);
    chownSync(data, Number(spawnSync('id', ['-u', 'postfix'], { encoding: 'utf8' }).stdout), 0);
    // The mail root belongs to the user `postern deliver` runs as (the pipe transport's user=), so that
    // `postern user add` run as root gives the users file to that user too.
    chownSync(mail, NOBODY, NOBODY);
    // docs/delivery.md: install -d -o postern -g postfix -m 0750 /var/spool/postfix/postern
    const socketDir = join(spool, 'postern');
    mkdirSync(socketDir);
    const postfixGid = Number(spawnSync('getent', ['group', 'postfix'], { encoding: 'utf8' }).stdout.split(':')[2]);
    chownSync(socketDir, 0, postfixGid);
    chmodSync(socketDir, 0o750);

    smtpPort = await freePort();
    popPort = await freePort();
    const config = join(dir, 'postern.toml');
    writeFileSync(
      config,
      `[[listen]]
address = "127.0.0.1"
port = ${popPort}
tls = "none"

[storage]
root = "mail"

[auth]
users_file = "users"

[lmtp]
socket = "${join(socketDir, 'lmtp')}"
socket_mode = "0666"

[log]
level = "info"
`,
    );
    for (const [user, password] of [
      ['alice@example.test', 'alice-password'],
      ['carol@pipe.test', 'carol-password'],
    ]) {
      const r = postern(['user', 'add', user, '--config', config], `${password}\n`);
      assert.equal(r.status, 0, r.stderr);
    }
    assert.equal(statSync(join(dir, 'users')).uid, NOBODY, 'users file created for the mail root owner');

    server = spawn(process.execPath, [BIN, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    server.stdout?.on('data', (d) => {
      serverLog += d;
    });
    server.stderr?.on('data', (d) => {
      serverLog += d;
    });
    const deadline = Date.now() + 30_000;
    while (!serverLog.includes('"msg":"LMTP listening"')) {
      if (server.exitCode !== null || Date.now() > deadline) throw new Error(`postern did not start: ${serverLog}`);
      await new Promise((r) => setTimeout(r, 50));
    }

    writeFileSync(join(etc, 'recipients'), 'alice@example.test x\ncarol@pipe.test x\n');
    writeFileSync(join(etc, 'transport'), 'pipe.test postern:\n');
    writeFileSync(
      join(etc, 'main.cf'),
      `compatibility_level = 3.6
queue_directory = ${spool}
data_directory = ${data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.postern.test
mydomain = postern.test
myorigin = postern.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
smtputf8_enable = no
maillog_file = ${join(dir, 'postfix.log')}
maillog_file_prefixes = ${dir}
# docs/delivery.md: Postern's users as virtual mailboxes, delivered over LMTP
virtual_mailbox_domains = example.test pipe.test
virtual_mailbox_maps = texthash:${join(etc, 'recipients')}
virtual_transport = lmtp:unix:postern/lmtp
# … and pipe.test through \`postern deliver\`
transport_maps = texthash:${join(etc, 'transport')}
postern_destination_recipient_limit = 1
`,
    );
    // master.cf columns: service type private unpriv chroot wakeup maxproc command (no chroot here).
    const svc = (name: string, type: string, priv: string, maxproc: string, command: string, unpriv = '-') =>
      `${name} ${type} ${priv} ${unpriv} n - ${maxproc} ${command}`;
    writeFileSync(
      join(etc, 'master.cf'),
      [
        svc(`127.0.0.1:${smtpPort}`, 'inet', 'n', '-', 'smtpd'),
        svc('pickup', 'unix', 'n', '1', 'pickup'),
        svc('cleanup', 'unix', 'n', '0', 'cleanup'),
        svc('qmgr', 'unix', 'n', '1', 'qmgr'),
        svc('rewrite', 'unix', '-', '-', 'trivial-rewrite'),
        svc('bounce', 'unix', '-', '0', 'bounce'),
        svc('defer', 'unix', '-', '0', 'bounce'),
        svc('trace', 'unix', '-', '0', 'bounce'),
        svc('verify', 'unix', '-', '1', 'verify'),
        svc('flush', 'unix', 'n', '0', 'flush'),
        svc('proxymap', 'unix', '-', '-', 'proxymap'),
        svc('showq', 'unix', 'n', '-', 'showq'),
        svc('error', 'unix', '-', '-', 'error'),
        svc('retry', 'unix', '-', '-', 'error'),
        svc('discard', 'unix', '-', '-', 'discard'),
        svc('lmtp', 'unix', '-', '-', 'lmtp'),
        svc('anvil', 'unix', '-', '1', 'anvil'),
        svc('scache', 'unix', '-', '1', 'scache'),
        svc('postlog', 'unix-dgram', 'n', '1', 'postlogd'),
        svc('postern', 'unix', '-', '-', 'pipe', 'n'),
        `  flags= user=nobody argv=${process.execPath} ${BIN} deliver --config ${config} -f \${sender} -u \${recipient}`,
        '',
      ].join('\n'),
    );
    const check = postfix('check');
    assert.equal(check.status, 0, `postfix check: ${check.stderr}${maillog()}`);
    const start = postfix('start');
    assert.equal(start.status, 0, `postfix start: ${start.stderr}${maillog()}`);
    postfixStarted = true;
  });

  after(async () => {
    if (postfixStarted) {
      postfix('stop');
      // The master exits once its children have; wait for its pid file to go, bounded.
      const pidFile = join(dir, 'spool', 'pid', 'master.pid');
      const deadline = Date.now() + 20_000;
      while (existsSync(pidFile) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    }
    if (server && server.exitCode === null) {
      const exited = new Promise((r) => server?.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    }
    if (dir) removeTempDir(dir);
  });

  /** Waits (bounded) until `user`'s Maildir has `n` messages in new/. */
  /**
   * Postfix's log once it matches `re` (or as it is after 10 s, for the assertion to show):
   * the message can be in the Maildir before the delivery agent's status line is written.
   */
  async function logged(re: RegExp): Promise<string> {
    const deadline = Date.now() + 10_000;
    while (!re.test(maillog()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    return maillog();
  }

  async function delivered(user: string, n: number): Promise<string[]> {
    const newDir = join(dir, 'mail', user, 'Maildir', 'new');
    const deadline = Date.now() + 60_000;
    for (;;) {
      const names = existsSync(newDir) ? readdirSync(newDir) : [];
      if (names.length >= n) return names.map((f) => join(newDir, f));
      if (Date.now() > deadline) throw new Error(`no delivery to ${user}:\n${maillog()}\n${serverLog}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function retrieveAll(user: string, password: string): Promise<Buffer[]> {
    const client = await Pop3Client.connect({
      host: '127.0.0.1',
      port: popPort,
      tls: 'none',
      allowInsecureAuth: true,
      auth: { user, password },
      timeoutMs: 20_000,
    });
    try {
      const out: Buffer[] = [];
      for (const { number, size } of await client.list()) {
        const bytes = await (await client.retrieve(number)).bytes();
        assert.equal(bytes.length, size, 'LIST size = octets received');
        out.push(bytes);
      }
      await client.quit();
      return out;
    } finally {
      client.destroy();
    }
  }

  /** swaks over SMTP to the private Postfix, from bob@example.net to `to`. */
  const smtp = (to: string, ...args: string[]) =>
    swaks([
      '--protocol',
      'ESMTP',
      '--server',
      `127.0.0.1:${smtpPort}`,
      '--from',
      'bob@example.net',
      '--to',
      to,
      ...args,
    ]);

  /** Sends `msg` exactly as it is (swaks --no-data-fixup). */
  async function sendSmtp(to: string, msg: Buffer): Promise<void> {
    const file = join(dir, `data-${to}`);
    writeFileSync(file, smtpData(msg));
    const r = await smtp(to, '--no-data-fixup', '--data', `@${file}`);
    assert.equal(r.code, 0, r.out);
  }

  const smtpMessage = message('via smtp', '\r\n');
  const sendmailMessage = message('via sendmail', '\n');
  const pipeMessage = message('via pipe', '\r\n');

  test('an unknown recipient is refused at RCPT (550 5.1.1), a Postern user without a Unix account is not', async () => {
    const r = await smtp('nobody@example.test', '--quit-after', 'RCPT');
    assert.match(r.out, /550 5\.1\.1 <nobody@example\.test>: Recipient address rejected/, r.out);
  });

  test('SMTP and sendmail → LMTP → POP3, byte for byte, stored with LF', async () => {
    await sendSmtp('alice@example.test', smtpMessage);
    // -i: a line of a single "." is text, not the end of the message (as mail(1) and MTAs call it).
    const sm = spawnSync(SENDMAIL, ['-C', etc, '-i', '-f', 'bob@example.net', 'alice@example.test'], {
      input: sendmailMessage,
      timeout: 30_000,
    });
    assert.equal(sm.status, 0, String(sm.stderr));

    const files = await delivered('alice@example.test', 2);
    for (const f of files) assert.ok(!readFileSync(f).includes('\r'), `${f} has LF line endings only`);

    const got = await retrieveAll('alice@example.test', 'alice-password');
    assert.equal(got.length, 2);
    for (const [subject, original] of [
      ['via smtp', smtpMessage],
      ['via sendmail', sendmailMessage],
    ] as const) {
      const m = got.find((b) => b.includes(`Subject: ${subject}\r\n`));
      assert.ok(m, subject);
      const crlf = Buffer.from(original.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
      assert.ok(
        m.toString('latin1').startsWith('Return-Path: <bob@example.net>\r\nDelivered-To: alice@example.test\r\n'),
        m.toString(),
      );
      assert.match(m.toString('latin1'), /\r\nReceived: by mx\.postern\.test|\r\nReceived: from /);
      assert.ok(m.subarray(m.length - crlf.length).equals(crlf), `${subject}: the message arrives byte for byte`);
    }
    const lmtpSent = /relay=mx\.postern\.test\[postern\/lmtp\].*status=sent \(250 2\.6\.0/;
    assert.match(await logged(lmtpSent), lmtpSent);
  });

  test('a pipe transport with user=nobody runs `postern deliver` for the other domain', async () => {
    await sendSmtp('carol@pipe.test', pipeMessage);
    const [stored] = await delivered('carol@pipe.test', 1);
    assert.equal(statSync(stored).uid, NOBODY, 'written by the pipe user');
    assert.ok(!readFileSync(stored).includes('\r'));
    const [m] = await retrieveAll('carol@pipe.test', 'carol-password');
    const crlf = pipeMessage;
    assert.ok(m.toString('latin1').startsWith('Return-Path: <bob@example.net>\r\nDelivered-To: carol@pipe.test\r\n'));
    assert.ok(m.subarray(m.length - crlf.length).equals(crlf), 'the message arrives byte for byte');
    const pipeSent = /relay=postern, .*status=sent \(delivered via postern service\)/;
    assert.match(await logged(pipeSent), pipeSent);
  });
});
