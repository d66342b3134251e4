/**
 * Bad input never crashes or hangs the server and changes nothing: random lines and bytes, sent in random
 * pieces before and after login, always get answers or a clean close, and the maildrop is untouched.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { commands } from '../../src/server/commands/index.ts';
import { MemoryStore } from '../../src/storage/memory/store.ts';
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

let t: TestServer;
const store = new MemoryStore();
before(async () => {
  store.add('alice', 'Subject: 1\r\n\r\none\r\n');
  store.add('alice', 'Subject: 2\r\n\r\n.two\r\n');
  t = await startTestServer({ store, limits: { maxBadCommands: 1000, maxAuthFailures: 1000 } });
});
after(() => t.close());

test('random command lines in random pieces: every session ends cleanly, nothing is deleted', async () => {
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
        // No QUIT: whatever the lines did, dropping the connection must delete nothing.
        const bytes = Buffer.from(
          lines
            .map((l) => l.replace(/[\r\n]/g, ' '))
            .join('\r\n')
            .concat('\r\nNOOP\r\nCAPA\r\n'),
          'latin1',
        );
        for (let i = 0; i < bytes.length; i += piece) w.send(bytes.subarray(i, i + piece));
        // The server must still be reading: the CAPA at the end gets its terminator (or the session was closed,
        // e.g. by STLS with no handshake following, which is also clean).
        // An accepted STLS also counts: what followed it in the clear is discarded, and the server then waits
        // (bounded by the handshake timeout) for a TLS ClientHello.
        const settled = () =>
          w.ended || w.pending().includes('\r\n.\r\n') || w.pending().includes('+OK Begin TLS negotiation');
        const deadline = Date.now() + 5000;
        while (!settled() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        assert.ok(settled(), `no answer to ${JSON.stringify(lines)}: ${JSON.stringify(w.pending().slice(-200))}`);
        w.destroy();
        // The lock is released asynchronously after the drop.
        for (let i = 0; i < 100 && store.isLocked('alice'); i++) await new Promise((r) => setTimeout(r, 5));
        assert.equal(store.list('alice').length, 2);
      },
    ),
    { numRuns: 60 },
  );
});
