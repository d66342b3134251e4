/**
 * A 100 MB message through a real `postern serve` on the PostgreSQL store: delivered over LMTP, retrieved
 * with RETR, every byte back, and the server's peak memory (VmHWM) grows by less than 64 MB: bodies are
 * staged and streamed in chunks, never held whole.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { PostgresUserDb } from '../../src/auth/postgres.ts';
import { migrate } from '../../src/storage/postgres/schema.ts';
import { BIN, freePort } from '../helpers/realServer.ts';
import { pgSkipReason, startTestPg, type TestPg } from './cluster.ts';

const skip = pgSkipReason();
const MB = 1 << 20;
const SIZE = 100 * MB;
/** One line of the message: 99 octets and CRLF, so the stored and the transmitted size agree. */
const LINE = Buffer.from(`${'m'.repeat(99)}\r\n`);

function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Reads from a socket until `done` says the buffer holds the end; bounded by `ms`. */
function reader(s: ReturnType<typeof connect>) {
  let buf = '';
  s.setEncoding('latin1');
  s.on('data', (d: string) => {
    buf += d;
  });
  return async (re: RegExp, ms = 60_000): Promise<string> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = re.exec(buf);
      if (m) {
        buf = buf.slice(m.index + m[0].length);
        return m[0];
      }
      if (Date.now() > deadline) throw new Error(`timeout waiting for ${re}: ${JSON.stringify(buf.slice(0, 200))}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
}

if (skip) {
  test('100 MB through the PostgreSQL store', { skip }, () => {});
} else {
  let db: TestPg;
  let dir: string;
  let server: ChildProcess | undefined;
  let out = '';
  let port = 0;
  let lmtpPort = 0;
  before(async () => {
    db = await startTestPg();
    const pool = new pg.Pool({ connectionString: db.url });
    await migrate(pool);
    await new PostgresUserDb(pool).addUser('big', 'pw-big');
    await pool.end();
    dir = mkdtempSync(join(tmpdir(), 'postern-pg-large-'));
    port = await freePort();
    lmtpPort = await freePort();
    const config = join(dir, 'postern.toml');
    writeFileSync(
      config,
      `[[listen]]\naddress = "127.0.0.1"\nport = ${port}\ntls = "none"\n\n[storage]\ndriver = "postgres"\nurl = "${db.url}"\n\n[auth]\ndriver = "postgres"\n\n[lmtp]\nport = ${lmtpPort}\nmax_message_size = 0\n\n[log]\nlevel = "warn"\n`,
    );
    server = spawn(process.execPath, [BIN, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    server.stdout?.on('data', (d) => {
      out += d;
    });
    server.stderr?.on('data', (d) => {
      out += d;
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const up = await new Promise<boolean>((r) => {
        const s = connect({ host: '127.0.0.1', port: lmtpPort }, () => {
          s.destroy();
          r(true);
        });
        s.on('error', () => r(false));
      });
      if (up) break;
      if (server.exitCode !== null || Date.now() > deadline) throw new Error(`server did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  after(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise((r) => server?.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    }
    await db?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a 100 MB message in over LMTP and out with RETR, intact, in bounded server memory', async () => {
    const pid = server?.pid ?? 0;
    const baseline = peakRss(pid);
    const sent = createHash('sha256');
    const lmtp = connect({ host: '127.0.0.1', port: lmtpPort });
    const wait = reader(lmtp);
    await wait(/^220 .*\r\n/m);
    lmtp.write('LHLO t\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<big@example.com>\r\nDATA\r\n');
    await wait(/^354 .*\r\n/m);
    const header = Buffer.from('Subject: big\r\n\r\n');
    lmtp.write(header);
    sent.update(header);
    const block = Buffer.concat(Array.from({ length: MB / LINE.length }, () => LINE));
    for (let n = header.length; n < SIZE; n += block.length) {
      sent.update(block);
      if (!lmtp.write(block)) await new Promise((r) => lmtp.once('drain', r));
    }
    lmtp.write('.\r\n');
    assert.match(await wait(/^\d{3} .*\r\n/m, 120_000), /^250/);
    lmtp.end('QUIT\r\n');

    const pop = connect({ host: '127.0.0.1', port });
    const got = createHash('sha256');
    let octets = 0;
    let tail = Buffer.alloc(0);
    const done = new Promise<void>((resolve, reject) => {
      let state = 0;
      let head = '';
      let started = false;
      let finished = false;
      pop.on('data', (d: Buffer) => {
        if (finished) return;
        if (state < 4) {
          head += d.toString('latin1');
          const lines = head.split('\r\n');
          // greeting, USER, PASS, RETR status line
          while (state < 4 && lines.length > 1) {
            const line = lines.shift() ?? '';
            if (!line.startsWith('+OK')) return reject(new Error(`unexpected: ${line} ${out}`));
            state++;
            if (state === 1) pop.write('USER big\r\n');
            if (state === 2) pop.write('PASS pw-big\r\n');
            if (state === 3) pop.write('RETR 1\r\n');
          }
          head = lines.join('\r\n');
          if (state < 4) return;
          d = Buffer.from(head, 'latin1');
        }
        // Body: from our Subject line (delivery put Return-Path and Delivered-To above it) up to the
        // terminating CRLF.CRLF (no line starts with a dot here).
        let all = Buffer.concat([tail, d]);
        if (!started) {
          const at = all.indexOf('Subject: big\r\n');
          if (at < 0) {
            tail = all;
            return;
          }
          all = all.subarray(at);
          started = true;
        }
        const end = all.indexOf('\r\n.\r\n');
        const keep = end >= 0 ? end + 2 : Math.max(0, all.length - 4);
        got.update(all.subarray(0, keep));
        octets += keep;
        tail = all.subarray(keep);
        if (end >= 0) {
          finished = true;
          resolve();
        }
      });
      pop.on('error', reject);
    });
    await done;
    pop.end('QUIT\r\n');
    assert.ok(octets > SIZE, `${octets} octets retrieved`);
    assert.equal(got.digest('hex'), sent.digest('hex'));
    const grown = peakRss(pid) - baseline;
    // Bounded whatever the size: delivery stages the body (memory up to one chunk, then a file) and RETR reads
    // raw octets with binary COPY in 32 KiB slices, one chunk ahead. 42-49 MB measured for 25, 100 and 200 MB
    // messages (load average 8-20; the LMTP receive path and V8's collection heuristics, not the message);
    // 77-88 MB before (hex-decoded bytea, chunks inserted as they arrived).
    assert.ok(grown < 64 * MB, `the server's peak memory grew by ${Math.round(grown / MB)} MB for a 100 MB message`);
    process.stderr.write(`# 100 MB message: server peak RSS grew by ${Math.round(grown / MB)} MB\n`);
  });
}
