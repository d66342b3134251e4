/**
 * Soak: SIGKILL of `postern deliver` at random points of its run (start-up, reading stdin, writing tmp/,
 * publishing). A message whose command exited 0 is there, whole; none is there twice or in part; the tmp/
 * files of killed runs are swept by the next delivery.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { BIN } from '../helpers/realServer.ts';
import { assertWhole, checkMaildir, report, rounds, type SoakDir, selfCheckingMessage, soakDir } from './harness.ts';

const RUNS = rounds(3);

/** Runs `postern deliver`; kills it `killAfterMs` after start when given. Resolves with the exit code or null. */
function deliver(config: string, message: Buffer, killAfterMs?: number): Promise<{ code: number | null; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const c = spawn(process.execPath, [BIN, 'deliver', '-c', config, '-u', 'dee'], {
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    c.stdin.on('error', () => {});
    c.stdin.end(message);
    const bound = setTimeout(() => c.kill('SIGKILL'), 60_000);
    const kill = killAfterMs === undefined ? undefined : setTimeout(() => c.kill('SIGKILL'), killAfterMs);
    c.once('exit', (code) => {
      clearTimeout(bound);
      if (kill) clearTimeout(kill);
      resolve({ code, ms: Date.now() - t0 });
    });
  });
}

describe('soak: SIGKILL of postern deliver', () => {
  let d: SoakDir;
  before(async () => {
    d = await soakDir({ dee: 'pw' });
  });
  after(() => d.remove());

  test(`${RUNS} kills at random points of postern deliver: nothing acknowledged is lost`, async () => {
    const md = d.maildir('dee');
    const durations: number[] = [];
    const acked = new Set<string>();
    let completed = 0;
    let tmpSeen = 0;
    for (let run = 0; run < RUNS; run++) {
      const bytes = 100_000 + Math.floor(Math.random() * 3_000_000);
      if (durations.length < 3 || run % 10 === 0) {
        const r = await deliver(d.config, selfCheckingMessage(`cal${run}`, bytes));
        assert.equal(r.code, 0);
        acked.add(`cal${run}`);
        durations.push(r.ms);
      }
      const typical = durations.slice(-5).sort((a, b) => a - b)[Math.floor(Math.min(5, durations.length) / 2)];
      const token = `p${run}`;
      // Most of a run is start-up: kill from a third of the way in to just past the usual end.
      const r = await deliver(d.config, selfCheckingMessage(token, bytes), typical * (0.33 + Math.random() * 0.8));
      if (r.code === 0) {
        completed++;
        acked.add(token);
      }
      const c = checkMaildir(md);
      assertWhole(c, `run ${run}`);
      for (const t of acked) assert.ok(c.tokens.has(t), `run ${run}: acknowledged ${t} lost`);
      tmpSeen += c.tmp.length;
    }
    assert.equal((await deliver(d.config, selfCheckingMessage('final', 1000))).code, 0);
    assert.deepEqual(checkMaildir(md).tmp, [], 'tmp/ files of killed runs not swept by the next delivery');
    report(
      'kill-deliver',
      `${RUNS} SIGKILLs of postern deliver (${completed} had exited 0 first): 0 lost, 0 duplicated, 0 partial; ` +
        `${tmpSeen} tmp/ files seen after kills, 0 after the next delivery`,
    );
  });
});
