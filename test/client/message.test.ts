/**
 * MessageStream on its own, fed as the connection feeds it: a stream read only by `for await` never builds Node's
 * Readable state (what makes retrieve() cheap per message), and a stream whose Readable side is used late is the
 * Readable it would have been from the start: closed after its end, failed after a failure, its chunks in order.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { MESSAGE_HIGH_WATER_MARK, type MessageSource, MessageStream } from '../../src/client/message.ts';

function source(): MessageSource & { resumed: number; abandoned: number } {
  return {
    resumed: 0,
    abandoned: 0,
    waiting: { bytes: 0 },
    resume() {
      this.resumed++;
    },
    abandon() {
      this.abandoned++;
    },
  };
}

const chunks = ['From: a\r\n', '\r\n', 'body\r\n'].map((s) => Buffer.from(s));

function fed(src = source()): MessageStream {
  const s = new MessageStream(src);
  for (const c of chunks) s.deliver(c);
  s.finish();
  return s;
}

describe('MessageStream', () => {
  it('read to its end by for await, it never builds Readable state, and is then a closed Readable', async () => {
    const s = fed();
    const got: Buffer[] = [];
    for await (const c of s) got.push(c);
    assert.deepEqual(Buffer.concat(got), Buffer.concat(chunks));
    assert.equal(Object.hasOwn(s, '_readableState'), false, 'no Readable state was made');
    assert.ok(s instanceof Readable);
    assert.equal(s.destroyed, true, 'closed, as a Readable read to its end is');
    assert.equal(s.readableEnded, true, 'and ended');
    assert.equal(s.errored, null);
    await finished(s); // a premature close would reject
  });

  it('read to its end by for await after its Readable side was used, it ends and closes as Node streams do', async () => {
    const s = fed();
    let ended = false;
    s.on('end', () => {
      ended = true;
    });
    const got: Buffer[] = [];
    for await (const c of s) got.push(c);
    assert.deepEqual(Buffer.concat(got), Buffer.concat(chunks));
    assert.equal(ended, true, "'end' was emitted");
    assert.equal(s.readableEnded, true);
    assert.equal(s.destroyed, true);
    await finished(s);
  });

  it('an unbuilt stream answers as a fresh Readable would', () => {
    const s = new MessageStream(source());
    assert.equal(s.readableHighWaterMark, MESSAGE_HIGH_WATER_MARK);
    assert.equal(s.destroyed, false);
    assert.equal(s.readable, true);
    assert.equal(s.readableEnded, false);
  });

  it('chunks queued before anyone reads are all read, in order, by a Readable consumer that comes late', async () => {
    const s = fed();
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    await new Promise((resolve) => s.on('end', resolve));
    assert.deepEqual(Buffer.concat(got), Buffer.concat(chunks));
  });

  it('a failure while for await waits rejects the loop, unbuilt or not, and leaves no unhandled error', async () => {
    for (const touchFirst of [false, true]) {
      const s = new MessageStream(source());
      s.deliver(chunks[0]);
      if (touchFirst) assert.equal(s.readableEnded, false); // builds the Readable state before the loop
      const boom = new Error('connection lost');
      const loop = (async () => {
        for await (const _c of s) setImmediate(() => s.destroy(boom)); // what Connection.failAll does
      })();
      await assert.rejects(loop, boom);
      assert.equal(s.errored, boom);
      assert.equal(s.destroyed, true);
    }
  });

  it('break in for await gives up the rest: the connection is told to drop it', async () => {
    const src = source();
    const s = new MessageStream(src);
    s.deliver(chunks[0]);
    for await (const _c of s) break;
    assert.equal(src.abandoned, 1);
    assert.equal(s.destroyed, true);
  });
});
