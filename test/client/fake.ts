/**
 * A scripted POP3 server behind a fake socket, for framing tests: canned replies, released in chunks cut at
 * chosen offsets of the whole server byte stream, each chunk delivered as its own 'data' event.
 */
import { Duplex } from 'node:stream';

export interface Step {
  /** The command line the client must send (without CRLF); omitted for the greeting. */
  expect?: string | RegExp;
  /** Exact bytes the server answers. */
  reply: string | Buffer;
  /** Close the connection after this reply. */
  close?: boolean;
}

export class FakeServer extends Duplex {
  /** Command lines received, in order. */
  readonly received: string[] = [];
  readonly mismatches: string[] = [];
  private readonly stream: Buffer;
  private readonly ends: number[] = []; // end offset of each step's reply in `stream`
  private sentUpTo = 0;
  private step = 0;
  private inbuf = '';
  private chain: Promise<void> = Promise.resolve();
  private readonly cuts: number[];

  /** `cuts`: offsets into the concatenated replies where a chunk boundary must fall. */
  constructor(
    private readonly steps: Step[],
    cuts: Iterable<number> = [],
  ) {
    super();
    const bufs = steps.map((s) => (typeof s.reply === 'string' ? Buffer.from(s.reply, 'latin1') : s.reply));
    this.stream = Buffer.concat(bufs);
    let o = 0;
    for (const b of bufs) {
      o += b.length;
      this.ends.push(o);
    }
    this.cuts = [...new Set(cuts)].filter((c) => c > 0 && c < this.stream.length).sort((a, b) => a - b);
    this.release(); // the greeting
  }

  get totalBytes(): number {
    return this.stream.length;
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.inbuf += chunk.toString('latin1');
    for (let i = this.inbuf.indexOf('\r\n'); i !== -1; i = this.inbuf.indexOf('\r\n')) {
      const line = this.inbuf.slice(0, i);
      this.inbuf = this.inbuf.slice(i + 2);
      this.received.push(line);
      const s = this.steps[this.step];
      if (!s) {
        this.mismatches.push(`unexpected command ${line}`);
        continue;
      }
      const ok = s.expect instanceof RegExp ? s.expect.test(line) : s.expect === line;
      if (!ok) this.mismatches.push(`step ${this.step}: expected ${String(s.expect)}, got ${line}`);
      this.release();
    }
    cb();
  }

  override _final(cb: () => void): void {
    this.chain = this.chain.then(() => {
      this.push(null);
    });
    cb();
  }

  /** Sends the current step's reply in chunks at the cut points, one event loop turn per chunk. */
  private release(): void {
    const step = this.steps[this.step];
    const end = this.ends[this.step];
    this.step++;
    const from = this.sentUpTo;
    this.sentUpTo = end;
    const bounds = [from, ...this.cuts.filter((c) => c > from && c < end), end];
    for (let k = 0; k + 1 < bounds.length; k++) {
      const piece = this.stream.subarray(bounds[k], bounds[k + 1]);
      this.chain = this.chain.then(
        () =>
          new Promise<void>((r) =>
            setImmediate(() => {
              if (!this.destroyed) this.push(Buffer.from(piece));
              r();
            }),
          ),
      );
    }
    if (step?.close) {
      this.chain = this.chain.then(() => {
        this.push(null);
      });
    }
  }
}

/** Dot-stuffs `body` (which must end in CRLF or be empty) and adds the terminator. */
export function stuff(body: Buffer): Buffer {
  const out: number[] = [];
  let lineStart = true;
  for (const b of body) {
    if (lineStart && b === 0x2e) out.push(0x2e);
    out.push(b);
    lineStart = b === 0x0a;
  }
  return Buffer.concat([Buffer.from(out), Buffer.from('.\r\n')]);
}
