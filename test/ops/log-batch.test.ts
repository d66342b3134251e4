/**
 * The server's log destination (observability/log.ts): the lines of one event-loop turn reach the file as one
 * write, after the turn (so a short session's `login` and `disconnect` lines never go out through the thread
 * pool ahead of the reply they log), in order, and nothing is lost at exit (flushSync).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { TurnBatchedDestination } from '../../src/observability/log.ts';

const dir = mkdtempSync(join(tmpdir(), 'postern-logbatch-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function logger(file: string) {
  const sonic = pino.destination({ dest: file, sync: false });
  const dest = new TurnBatchedDestination(sonic);
  return { log: pino({ base: null, timestamp: false }, dest), dest, sonic };
}

const turn = () => new Promise<void>((r) => setImmediate(r));
const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { msg: string }).msg);

describe('turn-batched log destination', () => {
  test('the lines of one turn are one write to the file, after the turn, in order', async () => {
    const file = join(dir, 'a.log');
    const { log, dest, sonic } = logger(file);
    await new Promise((r) => sonic.once('ready', r));
    log.info('one');
    log.info('two');
    log.warn('three');
    assert.equal(dest.batches, 0, 'nothing is handed to the file during the turn');
    await turn();
    assert.equal(dest.batches, 1, 'one write for the three lines');
    log.info('four');
    await turn();
    assert.equal(dest.batches, 2);
    // The writes are asynchronous (the thread pool): wait, bounded, for them to land.
    for (let i = 0; i < 200 && lines(file).length < 4; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(lines(file), ['one', 'two', 'three', 'four']);
  });

  test('flushSync (what runs at exit) writes the lines still pending, synchronously', async () => {
    const file = join(dir, 'b.log');
    const { log, dest, sonic } = logger(file);
    await new Promise((r) => sonic.once('ready', r));
    log.info('pending at exit');
    dest.flushSync();
    assert.deepEqual(lines(file), ['pending at exit']);
  });
});
