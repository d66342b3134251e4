/**
 * `postern fetch` end to end: the real command in a child process against our server (and Dovecot), delivering
 * to Maildir, mbox and an MDA; keep and delete modes; a run killed with SIGKILL mid-way and resumed.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseAccounts } from '../../src/fetch/config.ts';
import { fetchAccount } from '../../src/fetch/fetcher.ts';
import { QuietProgress } from '../../src/fetch/progress.ts';
import { type DovecotInstance, dovecotSkipReason, startDovecot } from '../helpers/dovecot.ts';
import { startTestServer, type TestServer, testCert } from '../helpers/server.ts';

const BIN = resolve(import.meta.dirname, '../../bin/postern.cjs');
const RUN_MS = 60_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function postern(args: string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<Run>((resolveRun) => {
    const t = setTimeout(() => child.kill('SIGKILL'), RUN_MS);
    child.once('close', (code) => {
      clearTimeout(t);
      resolveRun({ code, stdout, stderr });
    });
  });
  return { child, done };
}

async function fetchRun(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const r = await postern(['fetch', ...args], env).done;
  return r;
}

/** A message with a unique Message-ID, a line starting with "From " and one with a dot. */
function message(i: number, pad = 0): string {
  return [
    `From: sender${i}@example.org`,
    `Subject: test ${i}`,
    `Message-ID: <m${i}@postern.test>`,
    '',
    'From the start of a line, this must be quoted in an mbox.',
    '.a line with a leading dot',
    `body ${i} ${'x'.repeat(pad)}`,
    '',
  ].join('\r\n');
}

function maildirIds(dir: string): string[] {
  const ids: string[] = [];
  for (const sub of ['new', 'cur']) {
    const p = join(dir, sub);
    if (!existsSync(p)) continue;
    for (const f of readdirSync(p)) {
      const text = readFileSync(join(p, f), 'latin1');
      const m = /^Message-ID: <([^>]+)>$/m.exec(text);
      ids.push(m ? m[1] : `?${f}`);
    }
  }
  return ids.sort();
}

function expectedIds(n: number, from = 0): string[] {
  return Array.from({ length: n }, (_, i) => `m${i + from}@postern.test`).sort();
}

describe('postern fetch', () => {
  let srv: TestServer;
  let dir: string;
  let caFile: string;
  let n = 0;

  before(async () => {
    const users: Record<string, { password: string; secret?: string }> = {};
    for (let i = 0; i < 20; i++) users[`u${i}`] = { password: `pw${i}` };
    srv = await startTestServer({ users });
    dir = mkdtempSync(join(tmpdir(), 'postern-fetch-'));
    caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, (await testCert()).cert);
  });
  after(async () => {
    await srv?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A fresh user and a fresh working folder with an accounts file. */
  function setup(opts: { messages: number; pad?: number; deliver?: string; extra?: string }) {
    const i = n++;
    const user = `u${i}`;
    const work = join(dir, `case${i}`);
    mkdirSync(work);
    for (let k = 0; k < opts.messages; k++) srv.store.add(user, message(k, opts.pad));
    const accounts = join(work, 'fetch.toml');
    writeFileSync(
      accounts,
      `state_dir = "${work}/state"
[[account]]
name = "test"
host = "127.0.0.1"
port = ${srv.tlsPort}
tls = "implicit"
user = "${user}"
password_env = "TEST_POP3_PASSWORD"
ca_file = "${caFile}"
${opts.deliver ?? `maildir = "${work}/Maildir"`}
${opts.extra ?? ''}
`,
    );
    return { user, work, accounts, env: { TEST_POP3_PASSWORD: `pw${i}` } };
  }

  it('keep mode fetches everything once, and nothing the second time', async () => {
    const s = setup({ messages: 5 });
    const r1 = await fetchRun(['-f', s.accounts], s.env);
    assert.equal(r1.code, 0, r1.stderr);
    assert.match(r1.stdout, /test: 5 fetched/);
    assert.deepEqual(maildirIds(join(s.work, 'Maildir')), expectedIds(5));
    const r2 = await fetchRun(['-f', s.accounts], s.env);
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stdout, /test: 0 fetched/);
    assert.deepEqual(maildirIds(join(s.work, 'Maildir')), expectedIds(5));
    assert.equal(srv.store.list(s.user).length, 5);
    // New mail arrives: only it is fetched.
    srv.store.add(s.user, message(5));
    const r3 = await fetchRun(['-f', s.accounts, '--quiet'], s.env);
    assert.equal(r3.code, 0, r3.stderr);
    assert.equal(r3.stdout, '');
    assert.deepEqual(maildirIds(join(s.work, 'Maildir')), expectedIds(6));
    // Stored with LF line endings.
    const f = readdirSync(join(s.work, 'Maildir', 'new'))[0];
    assert.ok(!readFileSync(join(s.work, 'Maildir', 'new', f), 'latin1').includes('\r'));
  });

  it('delete mode empties the server', async () => {
    const s = setup({ messages: 7 });
    const r = await fetchRun(['-f', s.accounts, '--delete'], s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /7 fetched .*, 7 deleted, 0 left on server/);
    assert.equal(srv.store.list(s.user).length, 0);
    assert.deepEqual(maildirIds(join(s.work, 'Maildir')), expectedIds(7));
  });

  it('--dry-run lists and changes nothing; --max-size skips large messages', async () => {
    const s = setup({ messages: 3 });
    srv.store.add(s.user, message(3, 5000));
    const dry = await fetchRun(['-f', s.accounts, '--dry-run', '--delete'], s.env);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(dry.stdout.match(/would fetch/g)?.length, 4);
    assert.ok(!existsSync(join(s.work, 'Maildir')));
    assert.equal(srv.store.list(s.user).length, 4);
    const r = await fetchRun(['-f', s.accounts, '--max-size', '2k', '--delete'], s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /skipped #4/);
    assert.deepEqual(maildirIds(join(s.work, 'Maildir')), expectedIds(3));
    assert.equal(srv.store.list(s.user).length, 1); // the large one stays
  });

  it('mbox delivery: mboxrd quoting, a From line per message, lock released', async () => {
    const s = setup({ messages: 3, deliver: `mbox = "${join(dir, 'mboxcase', 'inbox')}"` });
    const r = await fetchRun(['-f', s.accounts], s.env);
    assert.equal(r.code, 0, r.stderr);
    const mbox = readFileSync(join(dir, 'mboxcase', 'inbox'), 'latin1');
    assert.equal(mbox.match(/^From MAILER-DAEMON /gm)?.length, 3);
    assert.equal(mbox.match(/^>From the start of a line/gm)?.length, 3);
    assert.ok(!/^From the start/m.test(mbox));
    assert.ok(mbox.endsWith('\n\n'));
    assert.ok(!existsSync(join(dir, 'mboxcase', 'inbox.lock')));
    // Unquoting gives back the messages (LF endings).
    const parts = mbox.split(/^From MAILER-DAEMON .*\n/m).slice(1);
    const unq = parts.map((p) => p.replace(/\n$/, '').replace(/^>(>*From )/gm, '$1'));
    assert.equal(unq[0], message(0).replace(/\r\n/g, '\n'));
  });

  it('MDA delivery: the message on stdin, the UIDL in the environment; a failing MDA keeps it on the server', async () => {
    const out = join(dir, 'mda-out');
    mkdirSync(out);
    const s = setup({ messages: 3, deliver: `mda = "cat > '${out}'/$POSTERN_UIDL.eml"`, extra: 'keep = false' });
    const r = await fetchRun(['-f', s.accounts], s.env);
    assert.equal(r.code, 0, r.stderr);
    const files = readdirSync(out).sort();
    assert.equal(files.length, 3);
    assert.equal(readFileSync(join(out, files[0]), 'latin1'), message(0).replace(/\r\n/g, '\n'));
    assert.equal(srv.store.list(s.user).length, 0);
    const bad = setup({ messages: 2, deliver: `mda = "cat >/dev/null; exit 75"`, extra: 'keep = false' });
    const rb = await fetchRun(['-f', bad.accounts], bad.env);
    assert.equal(rb.code, 1);
    assert.match(rb.stderr, /MDA .* failed \(exit 75\)/);
    assert.equal(srv.store.list(bad.user).length, 2);
  });

  for (const mode of ['--delete', '--keep'] as const) {
    it(`runs killed with SIGKILL inside a group and between groups, then resumed, neither lose nor duplicate (${mode})`, async () => {
      // 300 messages of ~4 KB: groups of 256, so the kill points below fall inside the first group (files in
      // tmp/, nothing recorded), inside the second (the first one committed), and wherever a loaded machine lets
      // the last one land. Each run starts where the journal says the last one stopped.
      const total = 300;
      const s = setup({ messages: total, pad: 4000 });
      const md = join(s.work, 'Maildir');
      const count = (sub: string) => (existsSync(join(md, sub)) ? readdirSync(join(md, sub)).length : 0);
      let insideGroup = 0;
      for (const killAt of [15, 120, 270]) {
        const { child, done } = postern(['fetch', '-f', s.accounts, mode, '--quiet'], s.env);
        const deadline = Date.now() + RUN_MS;
        let inTmp = 0;
        while (Date.now() < deadline) {
          inTmp = count('tmp');
          if (inTmp + count('new') >= killAt || child.exitCode !== null) break;
          await new Promise((r) => setTimeout(r, 1));
        }
        child.kill('SIGKILL');
        await done;
        if (inTmp > 0) insideGroup++;
        const ids = maildirIds(md);
        assert.ok(ids.length < total, `killed after ${ids.length} of ${total}: too late to test`);
        assert.equal(new Set(ids).size, ids.length, 'a message was delivered twice');
        // Nothing was deleted by a killed run (no QUIT).
        assert.equal(srv.store.list(s.user).length, total);
      }
      assert.ok(insideGroup > 0, 'no kill landed inside a group');
      const r = await fetchRun(['-f', s.accounts, mode], s.env);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(maildirIds(md), expectedIds(total));
      assert.equal(readdirSync(join(md, 'tmp')).length, 0);
      assert.equal(srv.store.list(s.user).length, mode === '--delete' ? 0 : total);
      const again = await fetchRun(['-f', s.accounts, mode], s.env);
      assert.match(again.stdout, /0 fetched/);
      assert.deepEqual(maildirIds(md), expectedIds(total));
    });
  }

  it('--check counts new messages and bytes and downloads nothing', async () => {
    const s = setup({ messages: 3 });
    const c = await fetchRun(['-f', s.accounts, '--check'], s.env);
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /^test: 3 new messages \(\d+(\.\d)? \w*B\), 3 on server$/m);
    assert.ok(!existsSync(join(s.work, 'Maildir')));
    assert.equal((await fetchRun(['-f', s.accounts], s.env)).code, 0);
    const again = await fetchRun(['-f', s.accounts, '--check'], s.env);
    assert.match(again.stdout, /^test: 0 new messages \(0 B\), 3 on server$/m);
  });

  it('--received-header (and received_header = true) adds a Received: line to each stored message', async () => {
    const s = setup({ messages: 1 });
    const r = await fetchRun(['-f', s.accounts, '--received-header'], s.env);
    assert.equal(r.code, 0, r.stderr);
    const md = join(s.work, 'Maildir', 'new');
    const text = readFileSync(join(md, readdirSync(md)[0]), 'latin1');
    assert.match(
      text,
      /^Received: from 127\.0\.0\.1 by \S+ with POP3S \(postern fetch, account test\) id \S+; \w{3}, \d{2} \w{3} \d{4} [\d:]{8} \+0000\n/,
    );
    assert.equal(text.slice(text.indexOf('\n') + 1), message(0).replace(/\r\n/g, '\n'));
    const t = setup({ messages: 1, extra: 'received_header = true' });
    assert.equal((await fetchRun(['-f', t.accounts], t.env)).code, 0);
    const md2 = join(t.work, 'Maildir', 'new');
    assert.match(readFileSync(join(md2, readdirSync(md2)[0]), 'latin1'), /^Received: from 127\.0\.0\.1 /);
  });

  it('two accounts on one mailbox keep separate states; an old user@host state file is migrated', async () => {
    const s = setup({ messages: 2 });
    const second = `${readFileSync(s.accounts, 'utf8').split('[[account]]')[1].replace('name = "test"', 'name = "again"').replace(`${s.work}/Maildir`, `${s.work}/Maildir2`)}`;
    writeFileSync(s.accounts, `${readFileSync(s.accounts, 'utf8')}\n[[account]]${second}`);
    const r = await fetchRun(['-f', s.accounts], s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /test: 2 fetched/);
    assert.match(r.stdout, /again: 2 fetched/);
    assert.deepEqual(maildirIds(join(s.work, 'Maildir2')), expectedIds(2));
    // An older version kept the state as STATE_DIR/user@host.json: what it saw is not fetched again.
    const t = setup({ messages: 3 });
    const uidls = srv.store.list(t.user).map((m) => m.uidl);
    mkdirSync(join(t.work, 'state'), { recursive: true });
    const seen = Object.fromEntries(uidls.slice(0, 2).map((u) => [u, Date.now()]));
    writeFileSync(
      join(t.work, 'state', `${t.user}@127.0.0.1.json`),
      JSON.stringify({ version: 1, account: `${t.user}@127.0.0.1`, seen }),
    );
    const m = await fetchRun(['-f', t.accounts], t.env);
    assert.equal(m.code, 0, m.stderr);
    assert.match(m.stdout, /test: 1 fetched/);
    assert.ok(existsSync(join(t.work, 'state', `test=${t.user}@127.0.0.1_${srv.tlsPort}.json`)));
  });

  it('--daemon polls every N seconds and stops cleanly on SIGTERM', async () => {
    const s = setup({ messages: 1 });
    const { child, done } = postern(['fetch', '-f', s.accounts, '--daemon', '0.3', '--quiet'], s.env);
    const md = join(s.work, 'Maildir');
    const waitFor = async (n: number) => {
      const deadline = Date.now() + RUN_MS / 2;
      while (maildirIds(md).length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    };
    await waitFor(1);
    srv.store.add(s.user, message(1));
    await waitFor(2);
    child.kill('SIGTERM');
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(maildirIds(md), expectedIds(2));
  });

  it('exit 78 for every accounts-file error, 64 for bad flags; a failure says what failed', async () => {
    const s = setup({ messages: 0 });
    const bad = join(s.work, 'bad.toml');
    const cases: [string, string[], Record<string, string>, RegExp][] = [
      ['missing file', ['-f', join(s.work, 'nope.toml')], {}, /cannot read accounts file/],
      ['TOML syntax', ['-f', bad], {}, /bad\.toml:\d+:/],
      ['default file', [], { XDG_CONFIG_HOME: join(s.work, 'xdg') }, /cannot read accounts file/],
    ];
    writeFileSync(bad, '[[account]\nhost = ');
    for (const [what, args, env, re] of cases) {
      const r = await fetchRun(args, env);
      assert.equal(r.code, 78, `${what}: ${r.stderr}`);
      assert.match(r.stderr, re, what);
    }
    writeFileSync(bad, `[[account]]\nhost = "h"\nuser = "u"\nmaildir = "/m"\npin_sha256 = "zz"\n`);
    const pin = await fetchRun(['-f', bad]);
    assert.equal(pin.code, 78, pin.stderr);
    assert.match(pin.stderr, /pin_sha256.*not a SHA-256 fingerprint/);
    const url = `pop3s://u@127.0.0.1:${srv.tlsPort}`;
    const flags: string[][] = [
      [url, '--maildir', '/m', '--pin-sha256', 'abc'],
      [url, '--maildir', '/m', '--keep-days', 'soon'],
      [url, '--maildir', '/m', '--max-size', '12Q'],
      [url, '--maildir', '/m', '--daemon', '0'],
      [url, '--maildir', '/m', '--no-such-flag'],
      [url, '--maildir', '/m', '--keep', '--delete'],
      ['-f', s.accounts, 'no-such-account'],
      ['pop3s://127.0.0.1', '--maildir', '/m'],
    ];
    for (const args of flags) {
      const r = await fetchRun(args, s.env);
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.stderr}`);
    }
    // Nothing listens on that port: the error says so, not "0 left on server".
    const closed = await fetchRun(
      [
        `pop3://u@127.0.0.1:1?tls=none`,
        '--insecure-auth',
        '--maildir',
        join(s.work, 'm'),
        '--state-dir',
        join(s.work, 'st'),
        '--password-env',
        'TEST_POP3_PASSWORD',
      ],
      s.env,
    );
    assert.equal(closed.code, 1);
    assert.match(closed.stderr, /could not connect: cannot connect to 127\.0\.0\.1:1: .*ECONNREFUSED/);
    assert.ok(!/left on server/.test(closed.stderr));
  });

  it('keep_days deletes only messages fetched long enough ago', async () => {
    const s = setup({ messages: 2 });
    const [account] = parseAccounts(readFileSync(s.accounts, 'utf8'), s.accounts);
    account.keepDays = 7;
    const progress = new QuietProgress({ write: () => true });
    const pw = async () => s.env.TEST_POP3_PASSWORD;
    const day = 24 * 3600 * 1000;
    const t0 = Date.now();
    let r = await fetchAccount(account, { dryRun: false, progress, password: pw, now: () => t0 });
    assert.equal(r.fetched, 2);
    srv.store.add(s.user, message(2));
    r = await fetchAccount(account, { dryRun: false, progress, password: pw, now: () => t0 + 3 * day });
    assert.deepEqual([r.fetched, r.deleted], [1, 0]);
    r = await fetchAccount(account, { dryRun: false, progress, password: pw, now: () => t0 + 8 * day });
    assert.deepEqual([r.fetched, r.deleted], [0, 2]);
    assert.equal(srv.store.list(s.user).length, 1);
    assert.equal(r.error, undefined);
  });

  it('one account from a URL; wrong password fails with exit 1 and no password in the output', async () => {
    const s = setup({ messages: 1 });
    const url = `pop3s://${s.user}@127.0.0.1:${srv.tlsPort}`;
    const common = ['--ca-file', caFile, '--maildir', join(s.work, 'url-md'), '--state-dir', join(s.work, 'st')];
    const r = await fetchRun([url, ...common, '--password-env', 'TEST_POP3_PASSWORD'], s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(maildirIds(join(s.work, 'url-md')), expectedIds(1));
    const bad = await fetchRun([url, ...common, '--password-env', 'P'], { P: 'not-the-password' });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /POP3_ERR_AUTH/);
    assert.ok(!`${bad.stdout}${bad.stderr}`.includes('not-the-password'));
    // Certificate verification is on: without the CA the account fails.
    const untrusted = await fetchRun(
      [url, '--maildir', join(s.work, 'x'), '--state-dir', join(s.work, 'st'), '--password-env', 'TEST_POP3_PASSWORD'],
      s.env,
    );
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.stderr, /POP3_ERR_TLS/);
    // The way out is named: look at the certificate, then trust it or pin it.
    assert.match(untrusted.stderr, /--probe/);
    assert.match(untrusted.stderr, /--pin-sha256/);
    assert.ok(!/left on server/.test(untrusted.stderr));
  });

  it('--probe prints greeting, capabilities and the certificate', async () => {
    const r = await postern(['fetch', '--probe', `127.0.0.1:${srv.tlsPort}`]).done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Greeting: Postern test server ready/);
    assert.match(r.stdout, /SHA-256 fingerprint: ([0-9a-f]{2}:){31}[0-9a-f]{2}/);
    assert.match(r.stdout, /Trusted: NO/);
    assert.match(r.stdout, /^ {2}UIDL$/m);
    const stls = await postern(['fetch', '--probe', `127.0.0.1:${srv.port}`, '--tls', 'starttls']).done;
    assert.equal(stls.code, 0, stls.stderr);
    assert.match(stls.stdout, /\(STLS\)/);
  });
});

describe('postern fetch against Dovecot', { skip: dovecotSkipReason() }, () => {
  let d: DovecotInstance;
  let dir: string;
  before(async () => {
    d = await startDovecot({ users: { fetcher: 'dove pw' } });
    dir = mkdtempSync(join(tmpdir(), 'postern-fetch-dovecot-'));
  });
  after(async () => {
    await d?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('delete mode over STLS empties the Dovecot maildrop, then nothing is fetched again', async () => {
    for (let i = 0; i < 10; i++) d.addMessage('fetcher', message(i));
    writeFileSync(join(dir, 'ca.pem'), d.cert);
    const args = [
      `pop3://fetcher@127.0.0.1:${d.port}`,
      '--ca-file',
      join(dir, 'ca.pem'),
      '--maildir',
      join(dir, 'Maildir'),
      '--state-dir',
      join(dir, 'state'),
      '--password-env',
      'DOVE_PW',
      '--delete',
    ];
    const r = await fetchRun(args, { DOVE_PW: 'dove pw' });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(maildirIds(join(dir, 'Maildir')), expectedIds(10));
    assert.equal(d.count('fetcher'), 0);
    const again = await fetchRun(args, { DOVE_PW: 'dove pw' });
    assert.match(again.stdout, /0 fetched/);
  });
});
