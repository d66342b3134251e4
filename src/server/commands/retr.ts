/** RFC 1939 §5 RETR msg: the whole message, streamed and dot-stuffed. */
import { SizeCounter } from '../../mail/size.ts';
import { DotEncoder } from '../../protocol/dot.ts';
import type { Maildrop, MessageFile, MessageInfo } from '../../storage/types.ts';
import { type CommandSession, type CommandSpec, TRANSACTION } from './types.ts';

/** Messages up to this transmitted size are read in one call and answered in one write with their +OK. */
const SMALL_MESSAGE = 128 * 1024;
/**
 * Larger messages are read in pieces of this size and each piece goes out in one write: few system calls and
 * few trips through the thread pool, while memory per connection stays bounded (one piece being encoded, one
 * being read ahead, and what the socket holds until it drains).
 */
const LARGE_READ = 1024 * 1024;

export const retr: CommandSpec = {
  states: TRANSACTION,
  async run(s, cmd) {
    const { msn, info } = s.message(cmd.args[0]);
    await sendMessage(s, info);
    s.counters.retrieved++;
    s.retrieved.add(msn - 1);
  },
};

/**
 * Can `size` be the transmitted size of a file of `physical` octets? Every LF may gain a CR and a missing final
 * line ending adds at most two octets, so physical ≤ size ≤ 2·physical + 2. A `,W=` in a file name outside
 * that range is a lie (issue 13, defect 16), caught here where the physical size costs nothing.
 */
export function plausibleSize(physical: number, size: number): boolean {
  return physical <= size && size <= 2 * physical + 2;
}

/**
 * Sends one message (RETR) or its top (TOP, RFC 1939 §7): the file is read in large pieces and passed once
 * through the dot encoder (CRLF repair, dot-stuffing, TOP cut), and reading waits whenever the socket is full,
 * so memory stays bounded whatever the message size (design.md §6). The size announced is checked against the
 * file first: when the listed one cannot be right, the true one is counted, announced, and recorded.
 */
export async function sendMessage(s: CommandSession, info: MessageInfo, topLines?: number): Promise<void> {
  const md = s.requireMaildrop();
  const okLine = (size: number) => (topLines === undefined ? `+OK ${size} octets` : `+OK ${s.text.topFollows}`);
  const encoder = () => new DotEncoder(topLines === undefined ? {} : { topLines });
  if (info.size <= SMALL_MESSAGE && md.readSmall) {
    // Most mail is small: one read, one encoding pass, and the reply joins the batch's single write.
    const whole = await md.readSmall(info.id, info.size);
    if (whole !== null) {
      let size = info.size;
      if (info.sizeEstimated || !plausibleSize(whole.length, size)) {
        size = await correctSize(s, md, info, new SizeCounter().update(whole).digest(), whole.length);
      }
      const enc = encoder();
      s.reply(okLine(size));
      s.queue(enc.write(whole));
      s.queue(enc.end());
      return;
    }
  }
  if (md.openFile) {
    const file = await md.openFile(info.id);
    try {
      let size = info.size;
      if (info.sizeEstimated || !plausibleSize(file.physical, size)) {
        size = await correctSize(s, md, info, await countSize(file), file.physical);
      }
      s.reply(okLine(size));
      s.flush();
      await streamFile(s, info, file, encoder());
    } finally {
      await file.close().catch(() => {});
    }
    return;
  }
  const stream = await md.open(info.id);
  s.reply(okLine(info.size));
  s.flush();
  const enc = encoder();
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (s.isClosed) return;
      await s.write(enc.write(chunk));
      if (enc.finished) break;
    }
    await s.write(enc.end());
  } catch (err) {
    failedMidStream(s, info, err);
  } finally {
    stream.destroy();
  }
}

/**
 * The read loop of a large message: the next piece is read (in the thread pool) while the current one is
 * encoded, and encoded while the previous one drains to the socket; each piece is one write. No streams, and
 * per piece only the read and the drain as promises. The two read buffers take turns (a fresh one for each read
 * would cost page faults on every piece); the encoded piece is a new buffer, owned by the socket until written.
 */
async function streamFile(s: CommandSession, info: MessageInfo, file: MessageFile, enc: DotEncoder): Promise<void> {
  const buffers = [Buffer.allocUnsafe(LARGE_READ), Buffer.allocUnsafe(LARGE_READ)];
  let turn = 0;
  let pos = 0;
  const readInto = (buf: Buffer, at: number) => file.read(buf, 0, LARGE_READ, at).then((n) => buf.subarray(0, n));
  // Three pieces at most in hand: one being written (until the socket drains), one being encoded meanwhile, one
  // being read ahead. Encoding while the previous piece drains keeps both the CPU and the socket busy.
  let writing: Promise<void> = Promise.resolve();
  try {
    let next = readInto(buffers[0], 0);
    for (;;) {
      const chunk = await next;
      if (chunk.length === 0 || s.isClosed) break;
      pos += chunk.length;
      turn ^= 1;
      next = readInto(buffers[turn], pos);
      next.catch(() => {}); // handled when awaited; do not let an early close leave it unobserved
      const out = enc.write(chunk);
      // Nothing inserted (CRLF text): the read buffer itself goes to the socket, so it cannot be read into again.
      if (out.buffer === chunk.buffer) buffers[turn ^ 1] = Buffer.allocUnsafe(LARGE_READ);
      await writing;
      writing = s.write(out);
      if (enc.finished) break;
    }
    await writing;
    if (!s.isClosed) await s.write(enc.end());
  } catch (err) {
    failedMidStream(s, info, err);
  }
}

/**
 * A read that fails after the +OK went out: no -ERR can follow it, so the only honest answer is to close the
 * connection. Nothing is deleted, since the session never reaches UPDATE.
 */
function failedMidStream(s: CommandSession, info: MessageInfo, err: unknown): void {
  s.log.error({ err, uidl: info.uidl }, 'message read failed mid-stream');
  s.destroy('read failure');
}

/** Reads the whole file once and counts its transmitted size. */
async function countSize(file: MessageFile): Promise<number> {
  const counter = new SizeCounter();
  const buf = Buffer.allocUnsafe(LARGE_READ);
  for (let pos = 0; ; ) {
    const n = await file.read(buf, 0, buf.length, pos);
    if (n === 0) break;
    counter.update(buf.subarray(0, n));
    pos += n;
  }
  return counter.digest();
}

/** Logs a listed size that was wrong and has the store list the true one from now on. */
async function correctSize(
  s: CommandSession,
  md: Maildrop,
  info: MessageInfo,
  size: number,
  physical: number,
): Promise<number> {
  if (size !== info.size) {
    s.log.warn(
      { uidl: info.uidl, listed: info.size, physical, size, estimated: info.sizeEstimated === true },
      'listed message size was wrong; sending the true octet count',
    );
  }
  await md.correctSize?.(info.id, size);
  return size;
}
