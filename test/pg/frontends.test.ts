/**
 * Several real `postern serve` processes (different loopback ports) on one PostgreSQL database, as frontends
 * on several machines would be: the maildrop lock across them, mail delivered through one and listed by
 * another, a frontend killed with SIGKILL while holding a lock, a database restart during sessions, and
 * deliveries racing a QUIT. Users are added with `postern user add` into the database, the schema with
 * `postern db migrate`.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { PostgresUserDb } from '../../src/auth/postgres.ts';
import { BIN, freePort, postern } from '../helpers/realServer.ts';
import { Wire } from '../helpers/wire.ts';
import { pgSkipReason, startTestPg, type TestPg } from './cluster.ts';

const skip = pgSkipReason();
const LEASE_S = 2;

interface Node {
  readonly port: number;
  readonly lmtpPort: number;
  readonly config: string;
  proc: ChildProcess;
  out: string;
}

let db: TestPg;
let dir: string;
const nodes: Node[] = [];

function writeConfig(name: string, port: number, lmtpPort: number): string {
  const file = join(dir, `${name}.toml`);
  writeFileSync(
    file,
    `[server]
hostname = "${name}.test"

[[listen]]
address = "127.0.0.1"
port = ${port}
tls = "none"

[storage]
driver = "postgres"
url = "${db.url}"
pool_size = 4
statement_timeout = 5
lease = ${LEASE_S}

[auth]
driver = "postgres"

[lmtp]
port = ${lmtpPort}

[limits]
failed_login_delay = 0

[log]
level = "info"
`,
  );
  return file;
}

async function startNode(node: Node): Promise<void> {
  node.out = '';
  const c = spawn(process.execPath, [BIN, 'serve', '--config', node.config], { stdio: ['ignore', 'pipe', 'pipe'] });
  node.proc = c;
  c.stdout?.on('data', (d) => {
    node.out += d;
  });
  c.stderr?.on('data', (d) => {
    node.out += d;
  });
  const deadline = Date.now() + 30_000;
  while (!/"msg":"listening"/.test(node.out) || !/lmtp/i.test(node.out)) {
    if (c.exitCode !== null) throw new Error(`server exited: ${node.out}`);
    if (Date.now() > deadline) throw new Error(`server did not start: ${node.out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopNode(node: Node): Promise<void> {
  const c = node.proc;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

async function login(node: Node, user: string): Promise<{ wire: Wire; reply: string }> {
  const wire = await Wire.connect(node.port);
  assert.match(await wire.line(), /^\+OK/);
  assert.match(await wire.cmd(`USER ${user}`), /^\+OK/);
  return { wire, reply: await wire.cmd(`PASS pw-${user}`) };
}

async function uidls(node: Node, user: string): Promise<string[]> {
  const { wire, reply } = await login(node, user);
  assert.match(reply, /^\+OK/, reply);
  assert.match(await wire.cmd('UIDL'), /^\+OK/);
  const lines = await wire.lines();
  assert.match(await wire.cmd('QUIT'), /^\+OK/);
  wire.destroy();
  return lines.map((l) => l.split(' ')[1]);
}

/** One message over LMTP to a node; resolves with the reply to the end of DATA. */
async function lmtpDeliver(port: number, rcpt: string, body: string): Promise<string> {
  const s = connect({ host: '127.0.0.1', port });
  s.setEncoding('utf8');
  let buf = '';
  const waitFor = async (re: RegExp): Promise<string> => {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const m = re.exec(buf);
      if (m) {
        buf = buf.slice(m.index + m[0].length);
        return m[0];
      }
      if (Date.now() > deadline) throw new Error(`LMTP: no ${re} in ${JSON.stringify(buf)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  s.on('data', (d: string) => {
    buf += d;
  });
  s.on('error', () => {});
  try {
    await waitFor(/^220 .*\r\n/m);
    s.write('LHLO test\r\n');
    await waitFor(/^250 .*\r\n/m);
    s.write('MAIL FROM:<sender@example.com>\r\n');
    await waitFor(/^250 .*\r\n/m);
    s.write(`RCPT TO:<${rcpt}>\r\n`);
    await waitFor(/^250 .*\r\n/m);
    s.write('DATA\r\n');
    await waitFor(/^354 .*\r\n/m);
    s.write(`${body}\r\n.\r\n`);
    const reply = await waitFor(/^\d{3} .*\r\n/m);
    s.write('QUIT\r\n');
    return reply;
  } finally {
    s.destroy();
  }
}

if (skip) {
  test('several frontends on one PostgreSQL', { skip }, () => {});
} else {
  describe('several postern serve processes on one PostgreSQL', () => {
    before(async () => {
      const t0 = Date.now();
      const mark = (what: string) => process.stderr.write(`# ${what} at ${Date.now() - t0} ms\n`);
      db = await startTestPg();
      mark('database');
      dir = mkdtempSync(join(tmpdir(), 'postern-frontends-'));
      for (const name of ['a', 'b', 'c']) {
        const port = await freePort();
        const lmtpPort = await freePort();
        nodes.push({ port, lmtpPort, config: writeConfig(name, port, lmtpPort), proc: undefined as never, out: '' });
      }
      const cfg = nodes[0].config;
      // Before the schema exists a server refuses to start, and says what to run.
      const refused = postern(['serve', '--config', cfg]);
      assert.notEqual(refused.status, 0);
      assert.match(refused.stderr, /schema is missing.*postern db migrate/);
      const m = postern(['db', 'migrate', '--config', cfg]);
      assert.equal(m.status, 0, m.stderr);
      assert.match(m.stdout, /schema migrated from version 0 to 5/);
      // One user through the command, the rest directly (each command costs a process start).
      const r = postern(['user', 'add', 'alice', '--config', cfg], 'pw-alice\n');
      assert.equal(r.status, 0, r.stderr);
      const pool = new pg.Pool({ connectionString: db.url });
      const users = new PostgresUserDb(pool);
      await Promise.all(['bob', 'carol', 'dave', 'erin'].map((u) => users.addUser(u, `pw-${u}`)));
      await pool.end();
      mark('users');
      await Promise.all(nodes.map(startNode));
      mark('frontends');
    });
    after(async () => {
      await Promise.all(nodes.map(stopNode));
      await db?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('check-config connects and reports the schema version; user list reads the database', () => {
      const r = postern(['check-config', '--config', nodes[1].config]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /store {3}postgres postgres:\/\/.*lease 2 s/);
      assert.match(r.stdout, /database schema version 5 \(this Postern needs 5\)/);
      const l = postern(['user', 'list', '--config', nodes[2].config]);
      assert.equal(l.status, 0, l.stderr);
      assert.deepEqual(l.stdout.trim().split('\n'), ['alice', 'bob', 'carol', 'dave', 'erin']);
    });

    test('check-config asks the user database, not a users file, whether CRAM-MD5 can be offered', async () => {
      // A users file at the configured path with a {PLAIN} user must not count: the server never reads it.
      const file = join(dir, 'users');
      writeFileSync(file, 'frank:{PLAIN}secret::::::\n', { mode: 0o600 });
      const cfg = join(dir, 'check.toml');
      writeFileSync(
        cfg,
        `${readFileSync(nodes[1].config, 'utf8')}\n`.replace(
          'driver = "postgres"\n\n[lmtp]',
          `driver = "postgres"\nusers_file = "${file}"\n\n[lmtp]`,
        ),
      );
      const off = postern(['check-config', '--config', cfg]);
      assert.equal(off.status, 0, off.stderr);
      assert.match(off.stdout, /CRAM-MD5 off: no user has a shared secret/);
      assert.doesNotMatch(off.stdout, /frank|users {3}\//);
      const pool = new pg.Pool({ connectionString: db.url });
      try {
        await pool.query("update users set apop_secret = 'shared' where name = 'erin'");
        const on = postern(['check-config', '--config', cfg]);
        assert.equal(on.status, 0, on.stderr);
        assert.doesNotMatch(on.stdout, /CRAM-MD5 (off|unknown)/);
        assert.match(on.stdout, /sasl .*CRAM-MD5/);
      } finally {
        await pool.query("update users set apop_secret = null where name = 'erin'");
        await pool.end();
      }
    });

    test('the maildrop lock is exclusive across frontends', async () => {
      const a = await login(nodes[0], 'alice');
      assert.match(a.reply, /^\+OK/);
      for (const other of [nodes[1], nodes[2]]) {
        const b = await login(other, 'alice');
        assert.match(b.reply, /^-ERR \[IN-USE\]/);
        b.wire.destroy();
      }
      assert.match(await a.wire.cmd('QUIT'), /^\+OK/);
      a.wire.destroy();
      const again = await login(nodes[1], 'alice');
      assert.match(again.reply, /^\+OK/);
      assert.match(await again.wire.cmd('QUIT'), /^\+OK/);
      again.wire.destroy();
    });

    test('mail delivered through one frontend is listed by another at its next login', async () => {
      assert.match(await lmtpDeliver(nodes[0].lmtpPort, 'bob@example.com', 'Subject: one\r\n\r\nhello'), /^250 /);
      const d = postern(['deliver', '-u', 'bob', '--config', nodes[2].config], 'Subject: two\n\nvia deliver\n');
      assert.equal(d.status, 0, d.stderr);
      const seen = await uidls(nodes[1], 'bob');
      assert.equal(seen.length, 2);
      assert.deepEqual(await uidls(nodes[2], 'bob'), seen);
      const { wire } = await login(nodes[2], 'bob');
      assert.match(await wire.cmd('RETR 2'), /^\+OK/);
      const body = (await wire.lines()).join('\n');
      assert.match(body, /Delivered-To: bob/);
      assert.match(body, /via deliver/);
      assert.match(await wire.cmd('QUIT'), /^\+OK/);
      wire.destroy();
    });

    test('a frontend killed with SIGKILL holding a lock: another serves the mailbox once the lease expires', async () => {
      const c = nodes[2];
      const held = await login(c, 'carol');
      assert.match(held.reply, /^\+OK/);
      c.proc.kill('SIGKILL');
      await new Promise((r) => c.proc.once('exit', r));
      held.wire.destroy();
      const early = await login(nodes[0], 'carol');
      assert.match(early.reply, /^-ERR \[IN-USE\]/);
      early.wire.destroy();
      const deadline = Date.now() + LEASE_S * 1000 * 3 + 2000;
      let reply = '';
      while (Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 500));
        const t = await login(nodes[0], 'carol');
        reply = t.reply;
        if (/^\+OK/.test(reply)) {
          assert.match(await t.wire.cmd('QUIT'), /^\+OK/);
          t.wire.destroy();
          break;
        }
        t.wire.destroy();
      }
      assert.match(reply, /^\+OK/, 'the lease of the dead frontend never expired');
      await startNode(c);
    });

    test('deliveries racing a QUIT on the same mailbox lose nothing', async () => {
      for (let i = 0; i < 10; i++) {
        assert.match(await lmtpDeliver(nodes[0].lmtpPort, 'dave@example.com', `Subject: old ${i}\r\n\r\nold`), /^250/);
      }
      const s = await login(nodes[1], 'dave');
      assert.match(s.reply, /^\+OK Logged in, 10 messages/);
      for (let i = 1; i <= 10; i++) assert.match(await s.wire.cmd(`DELE ${i}`), /^\+OK/);
      const racing = Array.from({ length: 20 }, (_, i) =>
        lmtpDeliver(nodes[i % 3].lmtpPort, 'dave@example.com', `Subject: new ${i}\r\n\r\nnew ${i}`),
      );
      await new Promise((r) => setTimeout(r, 20));
      assert.match(await s.wire.cmd('QUIT'), /^\+OK/);
      s.wire.destroy();
      for (const r of await Promise.all(racing)) assert.match(r, /^250/);
      const { wire, reply } = await login(nodes[2], 'dave');
      assert.match(reply, /^\+OK Logged in, 20 messages/);
      const subjects: string[] = [];
      for (let i = 1; i <= 20; i++) {
        assert.match(await wire.cmd(`TOP ${i} 0`), /^\+OK/);
        const head = (await wire.lines()).find((l) => l.startsWith('Subject: '));
        subjects.push(head ?? '');
      }
      assert.deepEqual(subjects.sort(), Array.from({ length: 20 }, (_, i) => `Subject: new ${i}`).sort());
      assert.match(await wire.cmd('QUIT'), /^\+OK/);
      wire.destroy();
    });

    test('a database restart during sessions ends them with [SYS/TEMP] and loses nothing', async (t) => {
      if (!db.ours) return t.skip('needs a cluster started by the tests');
      assert.match(await lmtpDeliver(nodes[0].lmtpPort, 'erin@example.com', 'Subject: e1\r\n\r\nkeep me'), /^250/);
      const s = await login(nodes[0], 'erin');
      assert.match(s.reply, /^\+OK Logged in, 1 messages/);
      assert.match(await s.wire.cmd('DELE 1'), /^\+OK/);
      db.stop();
      try {
        // The outage: the commit cannot happen, so QUIT says so and deletes nothing.
        assert.match(await s.wire.cmd('QUIT'), /^-ERR \[SYS\/TEMP\]/);
        s.wire.destroy();
        const down = await login(nodes[1], 'erin');
        assert.match(down.reply, /^-ERR \[SYS\/TEMP\]/);
        down.wire.destroy();
      } finally {
        db.start();
      }
      // Back: every frontend reconnects by itself; the message is still there.
      for (const node of nodes) {
        let ok = '';
        for (let i = 0; i < 20 && !/^\+OK/.test(ok); i++) {
          const l = await login(node, 'erin');
          ok = l.reply;
          if (/^\+OK/.test(ok)) assert.match(await l.wire.cmd('QUIT'), /^\+OK/);
          l.wire.destroy();
          if (!/^\+OK/.test(ok)) await new Promise((r) => setTimeout(r, 500));
        }
        assert.match(ok, /^\+OK Logged in, 1 messages/);
      }
      for (const node of nodes) assert.equal(node.proc.exitCode, null, 'a frontend died');
    });
  });
}
