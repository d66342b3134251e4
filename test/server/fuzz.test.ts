/**
 * Bad input never crashes or hangs the server and changes nothing: random lines and bytes, sent in random
 * pieces before and after login, each get their own answer, in order (or the session ends by QUIT or STLS),
 * and nothing is deleted but what a generated DELE … QUIT committed.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { commands } from '../../src/server/commands/index.ts';
import { MemoryStore } from '../../src/storage/memory/store.ts';
import { matchAnswers } from '../helpers/answers.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { Wire } from '../helpers/wire.ts';

const VERBS = Object.keys(commands);

const line = fc.oneof(
  // A known verb, in either case, with odd arguments.
  fc
    .tuple(
      fc.constantFrom(...VERBS),
      fc.boolean(),
      fc.array(fc.oneof(fc.integer({ min: -5, max: 5 }).map(String), fc.string({ maxLength: 12 })), { maxLength: 3 }),
    )
    .map(([v, lower, args]) => [lower ? v.toLowerCase() : v, ...args].join(' ')),
  // Anything at all, binary included.
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a).toString('latin1')),
  // Long lines.
  fc.integer({ min: 200, max: 5000 }).map((n) => `LIST ${'9'.repeat(n)}`),
);

const MESSAGES = ['Subject: 1\r\n\r\none\r\n', 'Subject: 2\r\n\r\n.two\r\n'];

let t: TestServer;
const store = new MemoryStore();
function seed(): void {
  store.clear('alice');
  for (const m of MESSAGES) store.add('alice', m);
}
before(async () => {
  seed();
  t = await startTestServer({
    store,
    limits: { maxBadCommands: 1000, maxAuthFailures: 1000, tlsHandshakeTimeoutMs: 1000 },
  });
});
after(() => t.close());

test('random command lines in random pieces: each gets its own answer, in order; only DELE…QUIT deletes', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(line, { minLength: 1, maxLength: 12 }),
      fc.boolean(),
      fc.integer({ min: 1, max: 7 }),
      async (lines, loggedIn, piece) => {
        const w = await Wire.connect(t.port);
        await w.line();
        if (loggedIn) {
          await w.cmd('USER alice');
          assert.match(await w.cmd('PASS wonderland'), /^\+OK/);
        }
        const sent = [...lines.map((l) => l.replace(/[\r\n]/g, ' ')), 'NOOP', 'CAPA'].map((l) =>
          Buffer.from(l, 'latin1'),
        );
        const bytes = Buffer.concat(sent.flatMap((l) => [l, Buffer.from('\r\n')]));
        for (let i = 0; i < bytes.length; i += piece) w.send(bytes.subarray(i, i + piece));
        // Every line gets exactly one answer, in order (a multi-line one read to its end), within a bound;
        // only a QUIT or an accepted STLS ends the session before the last line is answered.
        let m = matchAnswers(sent, w.pending(), loggedIn);
        const deadline = Date.now() + 5000;
        while (m.state === 'more' && !w.ended && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 5));
          m = matchAnswers(sent, w.pending(), loggedIn);
        }
        const what = `${JSON.stringify(lines)} → ${JSON.stringify(w.pending().slice(-300))}`;
        assert.notEqual(m.state, 'more', `${m.answers.length} of ${sent.length} lines answered: ${what}`);
        if (m.state === 'all') assert.equal(m.extra, '', `more answers than lines: ${what}`);
        for (const a of m.answers) assert.match(a.status, /^(\+OK|-ERR|\+ )/, what);
        w.destroy();
        // The lock is released asynchronously after the drop.
        for (let i = 0; i < 100 && store.isLocked('alice'); i++) await new Promise((r) => setTimeout(r, 5));
        // Nothing is deleted but what a QUIT committed after DELEs (then the maildrop is seeded again).
        assert.equal(store.list('alice').length, MESSAGES.length - m.committed.size, what);
        if (m.committed.size > 0) seed();
      },
    ),
    { numRuns: 60 },
  );
});
