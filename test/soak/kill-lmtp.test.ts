/**
 * Soak: SIGKILL of the real server process at random points of LMTP deliveries (one transaction, three
 * recipients, bodies from 10 KB to 1 MB). Every recipient answered 250 before the kill has the whole message;
 * nothing is there twice or in part; the tmp/ files of killed deliveries are swept by the next process.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  assertWhole,
  checkMaildir,
  LmtpWire,
  report,
  rounds,
  selfCheckingMessage,
  soakSuite,
  spin,
} from './harness.ts';

const RUNS = rounds(3);
const USERS = ['ann', 'ben', 'cat'];

describe('soak: SIGKILL during LMTP delivery', () => {
  const suite = soakSuite(Object.fromEntries(USERS.map((u) => [u, 'pw'])), (d) => [d.lmtpPort]);

  /** One transaction; returns the replies after DATA that arrived (all of them unless `killAfterMs`). */
  async function transaction(token: string, bytes: number, killAfterMs?: number): Promise<string[]> {
    const w = await LmtpWire.open(suite.d.lmtpPort);
    try {
      await w.finals(1);
      w.send('LHLO soak.test\r\n');
      await w.finals(2);
      w.send('MAIL FROM:<soak@example.org>\r\n');
      for (const u of USERS) w.send(`RCPT TO:<${u}@example.org>\r\n`);
      w.send('DATA\r\n');
      const before = 3 + USERS.length + 1;
      const got = await w.finals(before);
      assert.match(got.at(-1) ?? '', /^354 /, got.join('\n'));
      w.send(selfCheckingMessage(token, bytes));
      w.send('.\r\n');
      if (killAfterMs === undefined) return (await w.finals(before + USERS.length)).slice(before);
      spin(killAfterMs);
      await suite.server.kill();
      await new Promise((r) => setImmediate(r)); // let what the kernel already holds be read
      return w
        .lines()
        .filter((l) => /^\d{3} /.test(l))
        .slice(before);
    } finally {
      w.destroy();
    }
  }

  test(`${RUNS} kills at random points of LMTP deliveries: nothing acknowledged is lost`, async () => {
    let txMs = 50;
    let acknowledged = 0;
    let tmpLeft = 0;
    let killedMid = 0;
    const acked = new Map<string, Set<string>>(USERS.map((u) => [u, new Set()]));
    for (let run = 0; run < RUNS; run++) {
      await suite.server.start();
      const bytes = 10_000 + Math.floor(Math.random() * 1_000_000);
      if (run % 5 === 0) {
        // Calibrate the window on an unkilled transaction of this size.
        const t0 = Date.now();
        const r = await transaction(`cal${run}`, bytes);
        txMs = Date.now() - t0;
        r.forEach((l, i) => {
          assert.match(l, /^250 /);
          acked.get(USERS[i])?.add(`cal${run}`);
        });
      }
      const token = `l${run}`;
      const replies = await transaction(token, bytes, Math.random() * txMs * 1.3);
      if (replies.length < USERS.length) killedMid++;
      replies.forEach((l, i) => {
        if (l.startsWith('250 ')) {
          acknowledged++;
          acked.get(USERS[i])?.add(token);
        }
      });
      for (const u of USERS) {
        const c = checkMaildir(suite.d.maildir(u));
        assertWhole(c, `run ${run}, ${u}`);
        for (const t of acked.get(u) ?? []) assert.ok(c.tokens.has(t), `run ${run}: ${u} lost acknowledged ${t}`);
        tmpLeft += c.tmp.length;
      }
    }
    // The next process sweeps the tmp/ files of the killed ones at its first delivery to each mailbox.
    await suite.server.start();
    await transaction('final', 1000);
    await suite.server.stop();
    for (const u of USERS) assert.deepEqual(checkMaildir(suite.d.maildir(u)).tmp, [], `${u}: tmp/ not swept`);
    report(
      'kill-lmtp',
      `${RUNS} SIGKILLs during LMTP deliveries of 3 recipients (${killedMid} before every reply, ` +
        `${acknowledged} copies acknowledged): 0 lost, 0 duplicated, 0 partial; ${tmpLeft} tmp/ files seen after kills, 0 after the next delivery`,
    );
  });
});
