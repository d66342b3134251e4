/**
 * Reply framing under every TCP chunking: a whole canned session is replayed with the server's bytes split at
 * each single offset, byte by byte, and at random offsets (fast-check), and must give the same results.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Pop3Client } from '../../src/client/client.ts';
import { Pop3ErrorCode, type Pop3ResponseError } from '../../src/client/errors.ts';
import type { MessageStream } from '../../src/client/message.ts';
import { FakeServer, type Step, stuff } from './fake.ts';

/** A body with every awkward thing: stuffed dots, ".\r" not followed by LF, lone CR/LF, NUL, 8-bit bytes. */
const TRICKY = Buffer.concat([
  Buffer.from('Subject: tricky\r\n\r\n.leading dot\r\n..two dots\r\n.\rnot the end\r\n', 'latin1'),
  Buffer.from([0x00, 0xff, 0xfe, 0x0d, 0x41, 0x0a, 0x2e, 0x0a]), // NUL, 8-bit, lone CR, bare LF, ".\n"
  Buffer.from('.\r\n\r\n. \r\nend\r\n', 'latin1'),
]);

/** Greeting, CAPA (answered `capa`), USER u / PASS p accepted, CAPA again after login (answered `capaAfter`). */
function loginSteps(capa: string, capaAfter: string): Step[] {
  return [
    { reply: '+OK hi\r\n' },
    { expect: 'CAPA', reply: capa },
    { expect: 'USER u', reply: '+OK\r\n' },
    { expect: 'PASS p', reply: '+OK\r\n' },
    { expect: 'CAPA', reply: capaAfter },
  ];
}

function session(opts: { pipelining?: boolean } = {}): { steps: Step[]; check(r: Results): void } {
  const caps = ['TOP', 'UIDL', 'USER', 'RESP-CODES', ...(opts.pipelining ? ['PIPELINING'] : [])];
  const capaReply = `+OK caps\r\n${caps.join('\r\n')}\r\n.\r\n`;
  const steps: Step[] = [
    { reply: '+OK fake POP3 ready\r\n' },
    { expect: 'CAPA', reply: capaReply },
    { expect: 'USER u', reply: '+OK\r\n' },
    { expect: 'PASS p w', reply: '+OK logged in\r\n' },
    { expect: 'CAPA', reply: capaReply },
    { expect: 'STAT', reply: '+OK 2 300\r\n' },
    { expect: 'LIST', reply: '+OK 2 messages\r\n1 100\r\n2 200\r\n.\r\n' },
    { expect: 'UIDL', reply: '+OK\r\n1 abc\r\n2 d.e~f\r\n.\r\n' },
    { expect: 'RETR 1', reply: Buffer.concat([Buffer.from('+OK 100 octets\r\n'), stuff(TRICKY)]) },
    { expect: 'RETR 9', reply: '-ERR [SYS/TEMP] no such message\r\n' },
    { expect: 'TOP 2 0', reply: '+OK\r\n.\r\n' }, // empty body: the terminator right away
    { expect: 'DELE 1', reply: '+OK\r\n' },
    { expect: 'QUIT', reply: '+OK bye\r\n', close: true },
  ];
  return {
    steps,
    check(r) {
      assert.deepEqual(r.stat, { count: 2, size: 300 });
      assert.deepEqual(r.messages, [
        { number: 1, uidl: 'abc', size: 100 },
        { number: 2, uidl: 'd.e~f', size: 200 },
      ]);
      assert.ok(r.body.equals(TRICKY), `body differs: ${JSON.stringify(r.body.toString('latin1'))}`);
      assert.equal(r.missing?.code, Pop3ErrorCode.Response);
      assert.equal(r.missing?.respCode, 'SYS/TEMP');
      assert.equal(r.top.length, 0);
    },
  };
}

interface Results {
  stat: unknown;
  messages: unknown[];
  body: Buffer;
  missing: Pop3ResponseError | undefined;
  top: Buffer;
}

async function run(steps: Step[], cuts: Iterable<number>): Promise<{ results: Results; fake: FakeServer }> {
  const fake = new FakeServer(steps, cuts);
  const client = await Pop3Client.connect({
    host: 'fake.invalid',
    tls: 'none',
    socket: fake,
    allowInsecureAuth: true,
    timeoutMs: 5000,
    auth: { user: 'u', password: 'p w' },
  });
  const stat = await client.stat();
  const messages = [];
  for await (const m of client.messages()) messages.push(m);
  const body = await (await client.retrieve(1)).bytes();
  const missing = await client.retrieve(9).then(
    () => undefined,
    (e: unknown) => e as Pop3ResponseError,
  );
  const top = await (await client.top(2, 0)).bytes();
  await client.delete(1);
  await client.quit();
  assert.deepEqual(fake.mismatches, []);
  return { results: { stat, messages, body, missing, top }, fake };
}

describe('client framing', () => {
  for (const pipelining of [false, true]) {
    const label = pipelining ? 'with PIPELINING' : 'without PIPELINING';

    it(`survives a split at every byte offset (${label})`, async () => {
      const s = session({ pipelining });
      const total = new FakeServer(s.steps).totalBytes;
      for (let p = 1; p < total; p++) {
        const { results } = await run(s.steps, [p]);
        try {
          s.check(results);
        } catch (err) {
          assert.fail(`split at ${p}: ${(err as Error).message}`);
        }
      }
    });

    it(`survives byte-by-byte delivery (${label})`, async () => {
      const s = session({ pipelining });
      const total = new FakeServer(s.steps).totalBytes;
      const { results } = await run(
        s.steps,
        Array.from({ length: total }, (_, i) => i),
      );
      s.check(results);
    });
  }

  it('sends LIST and UIDL together only when PIPELINING is advertised', async () => {
    for (const pipelining of [false, true]) {
      const s = session({ pipelining });
      const fake = new FakeServer(s.steps);
      const writes: string[] = [];
      const origWrite = fake.write.bind(fake);
      // Record how commands are grouped into writes after the login.
      fake.write = ((chunk: Buffer, ...rest: never[]) => {
        writes.push(chunk.toString('latin1'));
        return origWrite(chunk, ...rest);
      }) as typeof fake.write;
      const client = await Pop3Client.connect({
        host: 'x',
        tls: 'none',
        socket: fake,
        allowInsecureAuth: true,
        auth: { user: 'u', password: 'p w' },
      });
      assert.equal(client.pipelineWindow, pipelining ? 16 : 1);
      await client.stat();
      const seen = fake.received.length;
      const p = client.messages().next();
      // Before any reply to LIST arrives, UIDL is already on the wire only with pipelining.
      await new Promise((r) => setImmediate(r));
      const sentNow = fake.received.slice(seen);
      assert.deepEqual(sentNow, pipelining ? ['LIST', 'UIDL'] : ['LIST']);
      await p;
      client.destroy();
    }
  });

  it('random splits and random message bytes (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 400 }),
        fc.array(fc.nat({ max: 600 }), { maxLength: 40 }),
        async (raw, cuts) => {
          // Any bytes, made into a body that ends with CRLF (a multi-line body always ends with a line end).
          const body = Buffer.concat([Buffer.from(raw), Buffer.from('\r\n')]);
          const steps: Step[] = [
            ...loginSteps('-ERR no CAPA here\r\n', '-ERR\r\n'),
            { expect: 'RETR 1', reply: Buffer.concat([Buffer.from('+OK\r\n'), stuff(body)]) },
            { expect: 'NOOP', reply: '+OK\r\n' },
          ];
          const fake = new FakeServer(steps, cuts);
          const client = await Pop3Client.connect({
            host: 'x',
            tls: 'none',
            socket: fake,
            allowInsecureAuth: true,
            auth: { user: 'u', password: 'p' },
          });
          const got = await (await client.retrieve(1)).bytes();
          await client.noop(); // the reply after the body is framed correctly too
          client.destroy();
          assert.ok(got.equals(body));
          assert.deepEqual(fake.mismatches, []);
        },
      ),
      { numRuns: 300 },
    );
  });

  /**
   * A session with one message (RETR 1, `big`) and `next` after it, the server's bytes in 4 000-byte chunks;
   * logged in.
   */
  async function oneMessage(big: Buffer, next: Step): Promise<Pop3Client> {
    const steps: Step[] = [
      ...loginSteps('+OK\r\nUSER\r\n.\r\n', '+OK\r\n.\r\n'),
      { expect: 'RETR 1', reply: Buffer.concat([Buffer.from('+OK\r\n'), stuff(big)]) },
      next,
    ];
    const cuts = Array.from({ length: Math.ceil(big.length / 4000) + 1 }, (_, i) => 30 + i * 4000);
    return Pop3Client.connect({
      host: 'x',
      tls: 'none',
      socket: new FakeServer(steps, cuts),
      allowInsecureAuth: true,
      auth: { user: 'u', password: 'p' },
    });
  }

  it('a body abandoned half-way is drained, and the next reply is still read correctly', async () => {
    const big = Buffer.from(`${'x'.repeat(70)}\r\n`.repeat(5000));
    const client = await oneMessage(big, { expect: 'STAT', reply: '+OK 1 360000\r\n' });
    const stream = await client.retrieve(1);
    for await (const _chunk of stream) break; // leave after the first chunk
    assert.deepEqual(await client.stat(), { count: 1, size: 360000 });
    client.destroy();
  });

  /** 350 KB with stuffed dots, then a NOOP. */
  async function bigMessage(): Promise<{ client: Pop3Client; big: Buffer }> {
    const big = Buffer.from(`${'y'.repeat(68)}\r\n.dot\r\n`.repeat(4000));
    return { client: await oneMessage(big, { expect: 'NOOP', reply: '+OK\r\n' }), big };
  }

  /** Lets the connection read what it will while nobody consumes the body. */
  const idle = () => new Promise((r) => setTimeout(r, 50));

  it('a body read as a Readable (pipeline to a slow writer) is exact, and bounded while nobody reads it', async () => {
    const { client, big } = await bigMessage();
    const stream = await client.retrieve(1);
    await idle();
    assert.ok(stream.readableLength > 0 && stream.readableLength <= 128 * 1024, `${stream.readableLength} buffered`);
    const chunks: Buffer[] = [];
    const slow = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _enc, done) {
        chunks.push(chunk);
        setImmediate(done);
      },
    });
    await pipeline(stream, slow);
    assert.ok(Buffer.concat(chunks).equals(big));
    await client.noop(); // the reply after the body is framed correctly
    client.destroy();
  });

  it('a body read with for await by a slow consumer is exact, and bounded while nobody reads it', async () => {
    const { client, big } = await bigMessage();
    const stream = await client.retrieve(1);
    await idle();
    assert.ok(stream.readableLength > 0 && stream.readableLength <= 128 * 1024, `${stream.readableLength} buffered`);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      await new Promise((r) => setImmediate(r));
    }
    assert.ok(Buffer.concat(chunks).equals(big));
    assert.ok(stream.destroyed, 'a body read to its end is closed');
    await client.noop();
    client.destroy();
  });

  it('bodies nobody reads yet wait in at most about 1 MiB in all, then are all read exactly, in order', async () => {
    const body = (i: number) => Buffer.from(`${String(i).padStart(4, '0')}${'z'.repeat(90)}\r\n`.repeat(400));
    const n = 60; // 38 KB each, 2.3 MB in all: every body below a stream's own 64 KiB mark
    const steps: Step[] = [
      ...loginSteps('+OK\r\nUSER\r\nPIPELINING\r\n.\r\n', '+OK\r\nPIPELINING\r\n.\r\n'),
      ...Array.from({ length: n }, (_, i) => ({
        expect: `RETR ${i + 1}`,
        reply: Buffer.concat([Buffer.from('+OK\r\n'), stuff(body(i + 1))]),
      })),
    ];
    const client = await Pop3Client.connect({
      host: 'x',
      tls: 'none',
      socket: new FakeServer(
        steps,
        Array.from({ length: 200 }, (_, i) => 100 + i * 16_000),
      ),
      allowInsecureAuth: true,
      auth: { user: 'u', password: 'p' },
    });
    const came: MessageStream[] = [];
    const all = Array.from({ length: n }, (_, i) =>
      client.retrieve(i + 1).then((s) => {
        came.push(s);
        return s;
      }),
    );
    // Until nothing more comes (the fake server sends slowly): 200 ms without a new stream, 5 s at most.
    for (let seen = -1, t = 0; seen !== came.length && t < 25; t++) {
      seen = came.length;
      await new Promise((r) => setTimeout(r, 200));
    }
    const waiting = came.reduce((sum, s) => sum + s.readableLength, 0);
    assert.ok(waiting <= 1024 * 1024 + 64 * 1024 + 16_000, `${waiting} bytes waiting in ${came.length} streams`);
    assert.ok(came.length < n, 'the socket stopped before every body was read ahead');
    for (let i = 0; i < n; i++) assert.ok((await (await all[i]).bytes()).equals(body(i + 1)), `message ${i + 1}`);
    client.destroy();
  });

  it("a body complete before anyone reads it still gives its bytes and 'end' to a later on('data')", async () => {
    const steps: Step[] = [
      ...loginSteps('+OK\r\nUSER\r\nPIPELINING\r\n.\r\n', '+OK\r\nPIPELINING\r\n.\r\n'),
      { expect: 'RETR 1', reply: Buffer.concat([Buffer.from('+OK\r\n'), stuff(TRICKY)]) },
      { expect: 'NOOP', reply: '+OK\r\n' },
    ];
    const client = await Pop3Client.connect({
      host: 'x',
      tls: 'none',
      socket: new FakeServer(steps, [40, 41, 70]),
      allowInsecureAuth: true,
      auth: { user: 'u', password: 'p' },
    });
    const stream = await client.retrieve(1);
    await client.noop(); // the whole body has been read by now
    const chunks: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    assert.ok(Buffer.concat(chunks).equals(TRICKY));
    client.destroy();
  });
});
