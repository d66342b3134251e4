/**
 * Soak: a seeded command fuzzer. Sessions before login, after login and after STLS send pipelined bursts of
 * generated lines (known verbs with odd arguments, binary, overlong lines, bad base64 in AUTH, SASL
 * continuations, DELE/RSET/QUIT) in random pieces. Every line must get its own answer in order within a bound
 * (or the session ends by QUIT or STLS): no crash, no silent stall. Nothing is deleted but what a QUIT
 * committed, and the process's RSS comes back near where it started.
 *
 * Short (npm test): ~20 000 lines. Long (SOAK=1): ≥ 1 000 000 lines. SOAK_SEED=n replays a run.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryStore } from '../../src/storage/memory/store.ts';
import { matchAnswers } from '../helpers/answers.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { figure, soakScale } from '../helpers/soak.ts';
import { Wire } from '../helpers/wire.ts';

const TOTAL_LINES = soakScale(20_000, 1_000_000);
const CONCURRENCY = soakScale(8, 32);
/** An answer must come within this long of the last byte sent, or the session is stalled. */
const ANSWER_BOUND_MS = 10_000;
const SEED = Number(process.env.SOAK_SEED ?? 13);
const MESSAGES = [
  'Subject: 1\r\n\r\none\r\n',
  'Subject: 2\r\n\r\n.two\r\n..three\r\n',
  `Subject: 3\r\n\r\n${'x'.repeat(3000)}\r\n`,
];

/** mulberry32: small, fast, seeded. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const VERBS = [
  'USER',
  'PASS',
  'APOP',
  'AUTH',
  'QUIT',
  'STAT',
  'LIST',
  'RETR',
  'DELE',
  'NOOP',
  'RSET',
  'TOP',
  'UIDL',
  'CAPA',
  'STLS',
  'UTF8',
  'LANG',
];
const BAD_BASE64 = ['!!!', 'abc', '=', '====', 'YWJj=ZA', '*', 'AAAA====', '\u00ff\u00fe'];

function lineGenerator(r: () => number): (inTransaction: boolean) => string {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)];
  const int = (n: number) => Math.floor(r() * n);
  const arg = () =>
    pick([String(int(6)), String(int(6) - 1), '9'.repeat(1 + int(30)), 'x', '', '\u00e9', String(2 ** 31)]);
  return (inTransaction) => {
    const k = r();
    if (k < 0.3) {
      const verb = pick(VERBS);
      if (verb === 'QUIT' || verb === 'STLS') return 'NOOP'; // the session's end is chosen by the session
      const args = Array.from({ length: int(3) }, arg);
      return [r() < 0.5 ? verb : verb.toLowerCase(), ...args].join(' ');
    }
    if (k < 0.4) return Buffer.from(Array.from({ length: int(80) }, () => int(256))).toString('latin1');
    if (k < 0.42) return `NOOP ${'o'.repeat(1025 + int(r() < 0.05 ? 40_000 : 4_000))}`; // overlong
    if (k < 0.5)
      return `AUTH ${pick(['PLAIN', 'LOGIN', 'SCRAM-SHA-256', 'CRAM-MD5', 'XOAUTH2', 'NOPE'])} ${pick(BAD_BASE64)}`;
    if (k < 0.53) return pick(BAD_BASE64); // a stray continuation (or a command, if no exchange is open)
    if (k < 0.56) return `AUTH PLAIN ${Buffer.from(`\0u${int(4)}\0guess${int(100)}`).toString('base64')}`;
    if (!inTransaction) return pick(['CAPA', 'NOOP', 'USER nobody', 'PASS wrong', 'AUTH', 'LANG', 'UTF8']);
    return pick([
      'STAT',
      'LIST',
      'UIDL',
      `LIST ${1 + int(4)}`,
      `RETR ${1 + int(4)}`,
      `TOP ${1 + int(4)} ${int(3)}`,
      `DELE ${1 + int(4)}`,
      'RSET',
      'NOOP',
      'CAPA',
    ]);
  };
}

let t: TestServer;
const store = new MemoryStore();
const users = Array.from({ length: CONCURRENCY }, (_, i) => `u${i}`);
function seed(user: string): void {
  store.clear(user);
  for (const m of MESSAGES) store.add(user, m);
}
before(async () => {
  for (const u of users) seed(u);
  t = await startTestServer({
    store,
    users: Object.fromEntries(users.map((u) => [u, { password: 'pw' }])),
    limits: { maxBadCommands: 1_000_000, maxAuthFailures: 1_000_000 },
  });
});
after(() => t.close());

test(`fuzzer: ${TOTAL_LINES} lines, every one answered in order; nothing deleted without QUIT; RSS comes back`, async () => {
  const r = rng(SEED);
  const next = lineGenerator(r);
  (globalThis as { gc?: () => void }).gc?.();
  const rss0 = process.memoryUsage().rss;
  const t0 = Date.now();
  let sent = 0;
  let sessions = 0;
  let quits = 0;
  let deleted = 0;
  const kinds = { authorization: 0, transaction: 0, stls: 0 };

  async function session(user: string): Promise<void> {
    const kind = r() < 0.4 ? 'transaction' : r() < 0.6 ? 'stls' : 'authorization';
    kinds[kind]++;
    const w = await Wire.connect(t.port);
    await w.line();
    let loggedIn = false;
    if (kind === 'stls') {
      assert.match(await w.cmd('STLS'), /^\+OK/);
      await w.startTls();
    }
    if (kind === 'transaction' || (kind === 'stls' && r() < 0.5)) {
      assert.match(await w.cmd(`USER ${user}`), /^\+OK/);
      assert.match(await w.cmd('PASS pw'), /^\+OK/, user);
      loggedIn = true;
    }
    const count = 20 + Math.floor(r() * 180);
    const lines = Array.from({ length: count }, () => next(loggedIn).replace(/[\r\n]/g, ' '));
    if (r() < 0.3) lines.push('QUIT');
    lines.push('NOOP', 'CAPA');
    const bufs = lines.map((l) => Buffer.from(l, 'latin1'));
    const bytes = Buffer.concat(bufs.flatMap((b) => [b, Buffer.from('\r\n')]));
    // Pipelined bursts in random pieces.
    for (let i = 0; i < bytes.length; ) {
      const piece = r() < 0.2 ? 1 + Math.floor(r() * 16) : 1 + Math.floor(r() * 8192);
      w.send(bytes.subarray(i, i + piece));
      i += piece;
      if (r() < 0.05) await sleep(1);
    }
    sent += bufs.length;
    let m = matchAnswers(bufs, w.pending(), loggedIn);
    let lastProgress = Date.now();
    let answered = 0;
    while (m.state === 'more' && !w.ended) {
      if (m.answers.length !== answered) {
        answered = m.answers.length;
        lastProgress = Date.now();
      }
      assert.ok(
        Date.now() - lastProgress < ANSWER_BOUND_MS,
        `stall: ${m.answers.length} of ${bufs.length} answered (seed ${SEED}); next ${JSON.stringify(lines[m.answers.length]?.slice(0, 80))}`,
      );
      await sleep(5);
      m = matchAnswers(bufs, w.pending(), loggedIn);
    }
    if (m.state === 'more') m = matchAnswers(bufs, w.pending(), loggedIn);
    assert.notEqual(
      m.state,
      'more',
      `closed after ${m.answers.length} of ${bufs.length} answers (seed ${SEED}): ${JSON.stringify(w.pending().slice(-200))}`,
    );
    if (m.state === 'all') assert.equal(m.extra, '', `more answers than lines (seed ${SEED})`);
    if (m.state === 'ended' && lines[m.answers.length - 1] === 'QUIT') quits++;
    w.destroy();
    for (let i = 0; i < 200 && store.isLocked(user); i++) await sleep(5);
    assert.equal(store.list(user).length, MESSAGES.length - m.committed.size, `${user} (seed ${SEED})`);
    if (m.committed.size > 0) {
      deleted += m.committed.size;
      seed(user);
    }
    sessions++;
  }

  await Promise.all(
    users.map(async (user) => {
      while (sent < TOTAL_LINES) await session(user);
    }),
  );
  const seconds = (Date.now() - t0) / 1000;
  for (let i = 0; i < 200 && t.server.sessionCount > 0; i++) await sleep(10);
  assert.equal(t.server.sessionCount, 0, 'sessions left open');
  await sleep(500);
  (globalThis as { gc?: () => void }).gc?.();
  const rss1 = process.memoryUsage().rss;
  const mb = (n: number) => Math.round(n / 1048576);
  figure(
    'command fuzzer',
    `${sent} lines in ${sessions} sessions (${kinds.authorization} before login, ${kinds.transaction} after, ${kinds.stls} after STLS; ${quits} QUIT committing ${deleted} DELEs) in ${seconds.toFixed(1)} s (${Math.round(sent / seconds)} lines/s), 0 stalls, 0 crashes, RSS ${mb(rss0)} → ${mb(rss1)} MB, seed ${SEED}`,
  );
  assert.ok(rss1 - rss0 < 200 * 1048576, `RSS grew from ${mb(rss0)} to ${mb(rss1)} MB`);
});
