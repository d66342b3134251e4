/**
 * Soak: the faults an unlucky machine brings, against the real server process. Each must end in a clear
 * -ERR or exit code for what is affected, the rest served, nothing lost:
 *
 * - a message file the server may not read, and one that vanishes during a session;
 * - a full disk (a small tmpfs filled to ENOSPC);
 * - a read-only Maildir (immutable new/ and cur/), and a file system remounted read-only;
 * - broken lines in the users file.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { MaildirStore } from '../../src/storage/maildir/store.ts';
import { immutable, mutable } from '../delivery/helpers.ts';
import { skipUnlessCi } from '../helpers/peers.ts';
import { BIN } from '../helpers/realServer.ts';
import { soakScale } from '../helpers/soak.ts';
import { mountTmpfs, type Tmpfs } from '../helpers/tmpfs.ts';
import { Wire } from '../helpers/wire.ts';
import { checkMaildir, LmtpWire, report, ServerProcess, selfCheckingMessage, soakDir } from './harness.ts';

const ROUNDS = soakScale(1, 20);
const NOBODY = 65534;
const asRoot = process.getuid?.() === 0;
const figures: string[] = [];

async function login(port: number, user: string): Promise<{ w: Wire; reply: string }> {
  const w = await Wire.connect(port);
  await w.line();
  await w.cmd(`USER ${user}`);
  return { w, reply: await w.cmd('PASS pw') };
}

/** One LMTP transaction; the replies after DATA, one per recipient. */
async function lmtp(port: number, to: string[], message: Buffer): Promise<string[]> {
  const w = await LmtpWire.open(port);
  try {
    await w.finals(1);
    w.send('LHLO soak.test\r\nMAIL FROM:<f@example.org>\r\n');
    for (const t of to) w.send(`RCPT TO:<${t}>\r\n`);
    w.send('DATA\r\n');
    const before = 3 + to.length + 1;
    const got = await w.finals(before);
    if (!got.at(-1)?.startsWith('354')) return got.slice(3, 3 + to.length);
    w.send(message);
    w.send('.\r\n');
    return (await w.finals(before + to.length)).slice(before);
  } finally {
    w.destroy();
  }
}

function deliverCmd(config: string, user: string, message: Buffer): Promise<number | null> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, 'deliver', '-c', config, '-u', user], {
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    c.stdin.on('error', () => {});
    c.stdin.end(message);
    const t = setTimeout(() => c.kill('SIGKILL'), 60_000);
    c.once('exit', (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

async function seed(root: string, user: string, tokens: string[]): Promise<void> {
  const store = new MaildirStore({ root });
  for (const t of tokens) await store.deliver(user, Readable.from([selfCheckingMessage(t, 3000)]));
  await store.close();
}

describe('soak: faults', () => {
  test('an unreadable message and a vanishing one: -ERR for them, the rest served', {
    skip: skipUnlessCi(asRoot ? null : 'needs root to run the server as another user'),
  }, async () => {
    const d = await soakDir({ uma: 'pw' });
    const server = new ServerProcess(d.config, [d.pop3Port], NOBODY);
    try {
      spawnSync('chown', ['-R', `${NOBODY}:${NOBODY}`, d.dir]);
      chmodSync(d.dir, 0o755);
      let served = 0;
      let refused = 0;
      await server.start();
      for (let round = 0; round < ROUNDS; round++) {
        const md = d.maildir('uma');
        rmSync(md, { recursive: true, force: true });
        await seed(d.root, 'uma', ['u1', 'u2', 'u3', 'u4']);
        spawnSync('chown', ['-R', `${NOBODY}:${NOBODY}`, join(d.root, 'uma')]);
        // Oldest first: u1 is msn 1. u2's file becomes root's and unreadable to the server.
        const fileOf = (token: string) =>
          readdirSync(join(md, 'new')).find((n) =>
            readFileSync(join(md, 'new', n), 'latin1').includes(`X-Token: ${token}\r\n`),
          ) ?? '';
        const [u2, u3] = [fileOf('u2'), fileOf('u3')];
        chownSync(join(md, 'new', u2), 0, 0);
        chmodSync(join(md, 'new', u2), 0);
        const { w, reply } = await login(d.pop3Port, 'uma');
        try {
          assert.match(reply, /^\+OK/, `login with an unreadable message: ${reply}`);
          assert.match(await w.cmd('STAT'), /^\+OK 4 /);
          // u3 vanishes during the session (another program, an operator).
          unlinkSync(join(md, 'new', u3));
          for (const n of [1, 2, 3, 4]) {
            const r = await w.cmd(`RETR ${n}`);
            if (r.startsWith('+OK')) {
              const token = (await w.lines()).find((l) => l.startsWith('X-Token: '));
              assert.equal(token, `X-Token: u${n}`);
              served++;
            } else {
              assert.ok(n === 2 || n === 3, `RETR ${n}: ${r}`);
              assert.match(r, n === 2 ? /^-ERR \[SYS\/(PERM|TEMP)\]/ : /^-ERR /);
              refused++;
            }
          }
          assert.match(await w.cmd('NOOP'), /^\+OK/, 'the session goes on');
          assert.match(await w.cmd('DELE 4'), /^\+OK/);
          assert.match(await w.cmd('QUIT'), /^\+OK/);
        } finally {
          w.destroy();
        }
        const left = checkMaildir(md);
        assert.deepEqual([...left.tokens.keys()].sort(), ['u1', 'u2'], 'u4 deleted, u1 and the unreadable u2 kept');
      }
      assert.equal(served, 2 * ROUNDS);
      figures.push(`unreadable + vanished file: ${refused} -ERR for them, ${served} others served`);
    } finally {
      await server.kill();
      d.remove();
    }
  });

  test('a full disk: delivery deferred (451, exit 75), POP3 login/RETR/DELE/QUIT work, nothing lost', async (t) => {
    const disk = mountTmpfs(2048);
    const why = skipUnlessCi(typeof disk === 'string' ? disk : null);
    if (why) return t.skip(why);
    const fs = disk as Tmpfs;
    const d = await soakDir({ fay: 'pw', gus: 'pw' }, { root: join(fs.dir, 'mail') });
    const server = new ServerProcess(d.config, [d.pop3Port, d.lmtpPort]);
    try {
      await seed(d.root, 'fay', ['d1', 'd2', 'd3']);
      await seed(d.root, 'gus', ['g1']);
      await server.start();
      let deferred = 0;
      for (let round = 0; round < ROUNDS; round++) {
        fs.fill();
        const r = await lmtp(d.lmtpPort, ['fay@x', 'gus@x'], selfCheckingMessage(`full${round}`, 100_000));
        for (const l of r) assert.match(l, /^4\d\d /, `LMTP on a full disk: ${r.join(' | ')}`);
        deferred += r.length;
        assert.equal(await deliverCmd(d.config, 'gus', selfCheckingMessage(`fullp${round}`, 100_000)), 75);
        deferred++;
        const { w, reply } = await login(d.pop3Port, 'fay');
        try {
          assert.match(reply, /^\+OK/, 'login on a full disk');
          assert.match(await w.cmd('RETR 1'), /^\+OK/);
          await w.lines();
          assert.match(await w.cmd('QUIT'), /^\+OK/);
        } finally {
          w.destroy();
        }
        for (const f of readdirSync(fs.dir).filter((n) => n.startsWith('filler-'))) unlinkSync(join(fs.dir, f));
      }
      // Room again: delivery works, and nothing stored before was lost.
      const ok = await lmtp(d.lmtpPort, ['fay@x'], selfCheckingMessage('after', 1000));
      assert.match(ok[0], /^250 /);
      assert.deepEqual([...checkMaildir(d.maildir('fay')).tokens.keys()].sort(), ['after', 'd1', 'd2', 'd3']);
      assert.deepEqual([...checkMaildir(d.maildir('gus')).tokens.keys()], ['g1']);
      figures.push(`full disk: ${deferred} deliveries deferred (4xx / exit 75), ${ROUNDS} logins served`);
    } finally {
      await server.kill();
      d.remove();
      fs.unmount();
    }
  });

  test('a read-only Maildir and a read-only file system: a clear -ERR or 4xx/75, nothing lost', async (t) => {
    const disk = mountTmpfs(4096);
    const why = skipUnlessCi(typeof disk === 'string' ? disk : null);
    if (why) return t.skip(why);
    const fs = disk as Tmpfs;
    const d = await soakDir({ rho: 'pw' }, { root: join(fs.dir, 'mail') });
    const server = new ServerProcess(d.config, [d.pop3Port, d.lmtpPort]);
    const md = d.maildir('rho');
    try {
      await seed(d.root, 'rho', ['r1', 'r2']);
      await server.start();
      // new/ and cur/ immutable: the lock (in the Maildir itself) still works, deletions and deliveries do not.
      const stuck = immutable(join(md, 'new')) ?? immutable(join(md, 'cur'));
      const why2 = skipUnlessCi(stuck);
      if (why2) return t.skip(why2);
      immutable(join(md, 'cur'));
      try {
        const { w, reply } = await login(d.pop3Port, 'rho');
        try {
          assert.match(reply, /^\+OK/);
          assert.match(await w.cmd('RETR 2'), /^\+OK/);
          await w.lines();
          assert.match(await w.cmd('DELE 1'), /^\+OK/);
          assert.match(await w.cmd('QUIT'), /^-ERR \[SYS\/TEMP\]/);
        } finally {
          w.destroy();
        }
        const r = await lmtp(d.lmtpPort, ['rho@x'], selfCheckingMessage('ro1', 1000));
        assert.match(r[0], /^451 /);
        assert.equal(await deliverCmd(d.config, 'rho', selfCheckingMessage('ro2', 1000)), 75);
      } finally {
        mutable(join(md, 'new'));
        mutable(join(md, 'cur'));
      }
      assert.deepEqual([...checkMaildir(md).tokens.keys()].sort(), ['r1', 'r2'], 'nothing deleted, nothing lost');
      // The whole file system read-only.
      assert.equal(spawnSync('mount', ['-o', 'remount,ro', fs.dir]).status, 0);
      try {
        const { w, reply } = await login(d.pop3Port, 'rho');
        w.destroy();
        assert.match(reply, /^(\+OK|-ERR \[SYS\/(PERM|TEMP)\])/, `login on a read-only file system: ${reply}`);
        const r = await lmtp(d.lmtpPort, ['rho@x'], selfCheckingMessage('ro3', 1000));
        assert.match(r[0], /^4\d\d /);
        assert.equal(await deliverCmd(d.config, 'rho', selfCheckingMessage('ro4', 1000)), 75);
        figures.push(
          `read-only Maildir: QUIT -ERR [SYS/TEMP], LMTP 451, exit 75; read-only mount: login ${reply.slice(0, 20)}…`,
        );
      } finally {
        spawnSync('mount', ['-o', 'remount,rw', fs.dir]);
      }
      assert.deepEqual([...checkMaildir(md).tokens.keys()].sort(), ['r1', 'r2']);
    } finally {
      await server.kill();
      d.remove();
      fs.unmount();
    }
  });

  test('broken lines in the users file: skipped, every other user served', async () => {
    const d = await soakDir({ ann: 'pw', bob: 'pw' });
    appendFileSync(
      d.usersFile,
      // Not UTF-8; a name the store cannot hold; no name; a second line for ann (the first one counts).
      Buffer.from(
        'bad\xffname:{PLAIN}pw::::::\n../evil:{PLAIN}pw::::::\n:{PLAIN}pw::::::\nann:{PLAIN}x::::::\n',
        'latin1',
      ),
    );
    appendFileSync(d.usersFile, 'zed:{PLAIN}pw::::::\n');
    const server = new ServerProcess(d.config, [d.pop3Port, d.lmtpPort]);
    try {
      await server.start();
      for (const u of ['ann', 'bob', 'zed']) {
        const { w, reply } = await login(d.pop3Port, u);
        assert.match(reply, /^\+OK/, `${u}: ${reply}`);
        w.destroy();
      }
      const r = await lmtp(d.lmtpPort, ['ann@x', 'zed@x'], selfCheckingMessage('b1', 1000));
      assert.deepEqual(
        r.map((l) => l.slice(0, 4)),
        ['250 ', '250 '],
        r.join(' | '),
      );
      assert.equal(await deliverCmd(d.config, 'bob', selfCheckingMessage('b2', 1000)), 0);
      assert.equal(await deliverCmd(d.config, '../evil', selfCheckingMessage('b3', 1000)), 67);
      figures.push('broken user lines: 4 skipped, the 3 good users log in and get mail');
    } finally {
      await server.kill();
      d.remove();
    }
    report('faults', `${figures.join('; ')}; 0 lost`);
  });
});
