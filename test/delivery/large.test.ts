/**
 * A 50 MB message over LMTP into the real `postern serve` process: stored complete and exact, and streamed —
 * the server's peak resident memory (VmHWM) grows by far less than the message would take if it were held.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { skipUnlessCi } from '../helpers/peers.ts';
import { freePort, type RealServer, startRealServer } from '../helpers/realServer.ts';
import { swaks } from './helpers.ts';

const HAVE_SWAKS = spawnSync('swaks', ['--version']).status === 0;
const HAVE_PROC = (() => {
  try {
    return /VmHWM/.test(readFileSync('/proc/self/status', 'utf8'));
  } catch {
    return false;
  }
})();
const MESSAGE_BYTES = 50 * 1024 * 1024;
/** Generous: the point is "not proportional to the message", with room for GC slack and buffers. */
const MAX_GROWTH_BYTES = 200 * 1024 * 1024;

function memoryOf(pid: number): { hwm: number; rss: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
  return { hwm: kb('VmHWM'), rss: kb('VmRSS') };
}

describe('a 50 MB message over LMTP', {
  skip: skipUnlessCi((!HAVE_SWAKS || !HAVE_PROC) && 'needs swaks and /proc'),
}, () => {
  let s: RealServer;
  let lmtpPort: number;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'postern-big-'));
    lmtpPort = await freePort();
    s = await startRealServer({
      extraConfig: `\n[lmtp]\naddress = "127.0.0.1"\nport = ${lmtpPort}\nmax_message_size = 0\n`,
    });
    s.addUser('alice', 'wonderland');
    await s.start();
  });
  after(async () => {
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('is stored byte for byte with bounded server memory', { timeout: 240_000 }, async (t) => {
    const pid = Number(/"pid":(\d+)[^\n]*"msg":"listening"/.exec(s.logs())?.[1]);
    assert.ok(pid > 0, 'server pid from its log');

    // The message as it should be stored, and its wire form (dot-stuffed) for swaks --no-data-fixup.
    const file = join(dir, 'data');
    const fd = openSync(file, 'w');
    const hash = createHash('sha256');
    // Stored with LF line endings (as every delivery path stores mail); sent with CRLF, as LMTP requires.
    const head = 'Return-Path: <big@example.net>\nDelivered-To: alice@example.com\n';
    hash.update(head);
    const header = 'Subject: big\r\nFrom: big@example.net\r\n\r\n';
    hash.update(header.replaceAll('\r\n', '\n'));
    writeSync(fd, header);
    const line = `${'0123456789abcdefghijklmnopqrstuvwxyz'.repeat(2)}\r\n`; // 74 octets
    const block: string[] = [];
    for (let i = 0; i < 1000; i++) block.push(i % 100 === 0 ? `.${line}` : line);
    const stored = Buffer.from(block.join('').replaceAll('\r\n', '\n'));
    const wire = Buffer.from(block.map((l) => (l.startsWith('.') ? `.${l}` : l)).join(''));
    let size = header.replaceAll('\r\n', '\n').length; // octets stored
    while (size < MESSAGE_BYTES) {
      hash.update(stored);
      writeSync(fd, wire);
      size += stored.length;
    }
    writeSync(fd, '.');
    closeSync(fd);
    const expected = hash.digest('hex');

    const warm = await swaks(['--server', '127.0.0.1', '--port', String(lmtpPort), '--to', 'alice@example.com']);
    assert.equal(warm.code, 0, warm.out);
    const before = memoryOf(pid);

    const started = Date.now();
    const r = await swaks(
      [
        '--server',
        '127.0.0.1',
        '--port',
        String(lmtpPort),
        '--from',
        'big@example.net',
        '--to',
        'alice@example.com',
        '--no-data-fixup',
        '--data',
        `@${file}`,
        '--suppress-data',
      ],
      200_000,
    );
    const seconds = (Date.now() - started) / 1000;
    assert.equal(r.code, 0, r.out.slice(-2000));
    const afterMem = memoryOf(pid);
    const growth = afterMem.hwm - before.hwm;
    t.diagnostic(
      `50 MB via LMTP in ${seconds.toFixed(1)} s; server VmHWM ${(before.hwm / 2 ** 20).toFixed(0)} → ${(afterMem.hwm / 2 ** 20).toFixed(0)} MiB (growth ${(growth / 2 ** 20).toFixed(1)} MiB), VmRSS after ${(afterMem.rss / 2 ** 20).toFixed(0)} MiB`,
    );
    assert.ok(growth < MAX_GROWTH_BYTES, `peak RSS grew by ${growth} bytes`);

    const newDir = join(s.maildir('alice'), 'new');
    const names = readdirSync(newDir).filter((n) => n.includes(`S=${size + head.length}`));
    assert.equal(names.length, 1, `one file of ${size + head.length} octets in ${readdirSync(newDir).join(', ')}`);
    const digest = createHash('sha256')
      .update(readFileSync(join(newDir, names[0])))
      .digest('hex');
    assert.equal(digest, expected);
  });
});
