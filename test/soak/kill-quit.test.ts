/**
 * Soak: SIGKILL of the real server process at random points of QUIT (UPDATE state: unlinks, directory fsyncs,
 * the +OK). After each kill the Maildir is read directly: nothing that was not marked is lost, nothing marked
 * is kept once +OK went out, no message is there twice or in part; the restarted server then takes the dead
 * session's lock over at once (the next login answers +OK) and sweeps what the dead process left.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { MaildirStore } from '../../src/storage/maildir/store.ts';
import { Wire } from '../helpers/wire.ts';
import { assertWhole, checkMaildir, report, rounds, selfCheckingMessage, soakSuite, spin } from './harness.ts';

const RUNS = rounds(3);
const MESSAGES = 10;

describe('soak: SIGKILL during QUIT', () => {
  const suite = soakSuite({ alice: 'pw' }, (d) => [d.pop3Port]);
  let store: MaildirStore;
  before(() => {
    store = new MaildirStore({ root: suite.d.root });
  });
  after(() => store.close());

  test(`${RUNS} kills at random points of QUIT: nothing lost, nothing kept after +OK`, async () => {
    const md = suite.d.maildir('alice');
    let next = 0;
    const topUp = async () => {
      const have = checkMaildir(md).tokens.size;
      for (let i = have; i < MESSAGES; i++) {
        const token = `q${next++}`;
        await store.deliver('alice', Readable.from([selfCheckingMessage(token, 2_000 + ((next * 7919) % 30_000))]));
      }
    };
    // The kill window: widened after a kill that came before +OK, narrowed after one that came after, so the
    // kills settle around the moment QUIT completes (some before, during and after the deletions).
    let quitMs = 5;
    let beforeOk = 0;
    let partialDeletes = 0;
    let keptAfterOk = 0;
    let lost = 0;
    for (let run = 0; run < RUNS; run++) {
      await topUp();
      await suite.server.start();
      const w = await Wire.connect(suite.d.pop3Port);
      try {
        assert.match(await w.line(), /^\+OK/);
        assert.match(await w.cmd('USER alice'), /^\+OK/);
        // The previous run's process was killed holding the lock: taken over at once (its pid is gone).
        assert.match(await w.cmd('PASS pw'), /^\+OK/, suite.server.output);
        const stat = await w.cmd('STAT');
        const count = Number(stat.split(' ')[1]);
        const marked = new Set<string>();
        for (let n = 1; n <= count; n++) {
          if (Math.random() < 0.5 && !(n === count && marked.size === 0)) continue;
          assert.match(await w.cmd(`TOP ${n} 0`), /^\+OK/);
          const token = (await w.lines()).find((l) => l.startsWith('X-Token: '))?.slice(9);
          assert.ok(token);
          marked.add(token);
          assert.match(await w.cmd(`DELE ${n}`), /^\+OK/);
        }
        const before = checkMaildir(md).tokens;
        const delay = Math.random() * quitMs * 2;
        w.send('QUIT\r\n');
        spin(delay);
        await suite.server.kill();
        await new Promise((r) => setImmediate(r)); // read what the kernel already holds
        const answered = w.pending().startsWith('+OK');
        quitMs = Math.min(2_000, Math.max(0.5, quitMs * (answered ? 0.85 : 1.2)));
        if (!answered) beforeOk++;
        const after = checkMaildir(md);
        assertWhole(after, `run ${run}`);
        for (const t of before.keys()) {
          if (!marked.has(t) && !after.tokens.has(t)) lost++;
        }
        const kept = [...marked].filter((t) => after.tokens.has(t)).length;
        if (answered) keptAfterOk += kept;
        else if (kept > 0 && kept < marked.size) partialDeletes++;
        assert.equal(lost, 0, `run ${run}: an unmarked message was lost`);
        assert.equal(keptAfterOk, 0, `run ${run}: a message marked for deletion survived +OK`);
      } finally {
        w.destroy();
      }
    }
    // The last process's leftovers: swept by the next one's first login.
    await suite.server.start();
    const w = await Wire.connect(suite.d.pop3Port);
    await w.line();
    await w.cmd('USER alice');
    assert.match(await w.cmd('PASS pw'), /^\+OK/);
    assert.match(await w.cmd('QUIT'), /^\+OK/);
    w.destroy();
    await suite.server.stop();
    const leftovers = readdirSync(md).filter((n) => n.endsWith('.tmp') || /lock\.\d+\./.test(n));
    assert.deepEqual(leftovers, [], 'temporary or held lock files left after the sweep');
    report(
      'kill-quit',
      `${RUNS} SIGKILLs during QUIT (${beforeOk} before +OK, ${partialDeletes} mid-deletion): ` +
        `0 lost, 0 kept after +OK, 0 duplicated, 0 partial, 0 leftovers`,
    );
  });
});
