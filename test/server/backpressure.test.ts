/**
 * Overlong lines while the output is backed up (issue 13 #1): a session must never stop reading for good.
 * Reproduced as found: RETR of a 600 KB message, then nine 12 KB lines, then CAPA, with the client not reading
 * at first. Every line gets its own answer, in order (one -ERR per overlong line, when its end arrives), and a
 * hang-up releases the maildrop lock at once.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryStore } from '../../src/storage/memory/store.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { Wire } from '../helpers/wire.ts';

const BIG = `Subject: big\r\n\r\n${'0123456789abcdef'.repeat(64).concat('\r\n').repeat(585)}`; // ~600 KB
const LONG = `NOOP ${'x'.repeat(12 * 1024)}`;

/** A raw socket that buffers what it receives; `paused` keeps it from reading (the kernel fills up). */
async function rawClient(port: number): Promise<{ sock: Socket; received: () => string; closed: () => boolean }> {
  const sock = connect({ port, host: '127.0.0.1' });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const chunks: Buffer[] = [];
  let closed = false;
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.on('close', () => {
    closed = true;
  });
  sock.on('error', () => {});
  return { sock, received: () => Buffer.concat(chunks).toString('latin1'), closed: () => closed };
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('overlong lines under backpressure', () => {
  let t: TestServer;
  beforeEach(async () => {
    const store = new MemoryStore();
    store.add('alice', BIG);
    t = await startTestServer({ store });
  });
  afterEach(() => t.close());

  /** The status lines after `from` (first words only) once `done` shows in what was received. */
  function statusLines(text: string, from: string): string[] {
    return text
      .slice(text.indexOf(from))
      .split('\r\n')
      .filter((l) => /^(\+OK|-ERR)/.test(l))
      .map((l) => l.replace(/ .*/, ''));
  }
  const CAPA_DONE = /\r\n\+OK Capability list follows\.\r\n[\s\S]*\r\n\.\r\n$/;
  /** Three overlong lines and 32 KiB of an unfinished one, ~70 KiB in one write (see the second test). */
  const BACKLOG = `${`NOOP ${'x'.repeat(13_000)}\r\n`.repeat(3)}NOOP ${'z'.repeat(32 * 1024 - 5)}`;

  test('RETR 600 KB, nine 12 KB lines, CAPA: every line answered in order (as reported)', async () => {
    const c = await rawClient(t.port);
    c.sock.write('USER alice\r\nPASS wonderland\r\n');
    await until('login', () => c.received().includes('+OK Logged in'));
    c.sock.pause(); // do not read: the RETR reply backs up into the server
    c.sock.write(`RETR 1\r\n${`${LONG}\r\n`.repeat(9)}`);
    await sleep(300);
    c.sock.write('CAPA\r\n');
    await sleep(300);
    c.sock.resume();
    await until('the CAPA listing', () => CAPA_DONE.test(c.received()));
    // Logged in, RETR, nine -ERR (one per overlong line), CAPA.
    assert.deepEqual(statusLines(c.received(), '+OK Logged in'), ['+OK', '+OK', ...Array(9).fill('-ERR'), '+OK']);
    assert.equal((c.received().match(/-ERR Line too long/g) ?? []).length, 9);
    c.sock.destroy();
  });

  test('reading resumes when a backlog ends in a long unfinished line', async () => {
    await t.close();
    t = await startTestServer({ limits: { failedLoginDelayMs: 600, failedLoginMaxDelayMs: 600 } });
    const c = await rawClient(t.port);
    await until('greeting', () => c.received().includes('\r\n'));
    // The failed login keeps the session busy for its delay, while the backlog arrives: reading pauses on the
    // read that brings the unfinished line in. Once the three lines are answered, that line's start is all
    // that is buffered; reading must go on, or its end (and the CAPA) would never be read.
    c.sock.write('USER alice\r\nPASS wrong\r\n');
    await sleep(100);
    c.sock.write(BACKLOG);
    await sleep(900);
    c.sock.write('\r\nCAPA\r\n');
    await until('the CAPA listing', () => CAPA_DONE.test(c.received()));
    assert.deepEqual(statusLines(c.received(), '+OK Send'), ['+OK', '-ERR', ...Array(4).fill('-ERR'), '+OK']);
    c.sock.destroy();
  });

  test('a hang-up after a backlog under backpressure releases the lock at once', async () => {
    await t.close();
    const store = new MemoryStore();
    store.add(
      'alice',
      `Subject: huge\r\n\r\n${'0123456789abcdef'
        .repeat(64)
        .concat('\r\n')
        .repeat(8 * 1024)}`,
    ); // 8 MB
    t = await startTestServer({ store });
    const c = await rawClient(t.port);
    c.sock.write('USER alice\r\nPASS wonderland\r\n');
    await until('login', () => c.received().includes('+OK Logged in'));
    c.sock.pause(); // the 8 MB reply fills the socket buffers: the session waits in RETR
    c.sock.write('RETR 1\r\n');
    await sleep(200);
    c.sock.write(BACKLOG);
    await sleep(200);
    c.sock.resume();
    await until('the RETR reply and the answers to the backlog', () =>
      /(-ERR Line too long[^\r]*\r\n){3}$/.test(c.received().slice(-300)),
    );
    await sleep(200);
    c.sock.end(); // a plain FIN with nothing unread on our side: only a server that reads notices it
    await until('the lock to be released', () => !store.isLocked('alice'), 2_000);
    const w = await Wire.connect(t.port);
    await w.line();
    assert.match(await w.cmd('USER alice'), /^\+OK/);
    assert.match(await w.cmd('PASS wonderland'), /^\+OK Logged in/);
    await w.cmd('QUIT');
  });

  test('a line of any length gets exactly one -ERR, sent when its end arrives', async () => {
    const w = await Wire.connect(t.port);
    await w.line();
    // Longer than every line limit (including the SASL continuation limit), sent in pieces.
    w.send('NOOP ');
    for (let i = 0; i < 10; i++) {
      w.send('y'.repeat(10_000));
      await sleep(20);
    }
    await sleep(100);
    assert.equal(w.pending(), '', 'no answer before the line has ended');
    w.send('\r\nCAPA\r\n');
    assert.match(await w.line(), /^-ERR Line too long/);
    assert.match(await w.line(), /^\+OK Capability/);
    await w.lines();
    assert.equal(w.pending(), '');
    w.destroy();
  });
});
