/**
 * Splitting an mbox file into messages, streamed: each message is handed on as a Readable while the file is
 * read, so a multi-gigabyte mbox never sits in memory.
 *
 * Format (RFC 4155 and the mbox family): a message starts with a `From ` line (the envelope separator, not
 * part of the message); writers add an empty line after each message, and quote body lines that would look
 * like a separator with `>`. Two quoting conventions exist:
 *   - mboxrd: every line matching /^>*From / gained one `>`, so reading removes one from every such line;
 *   - mboxo: only /^From / gained one, so only /^>From / loses one (an original `>From ` cannot be told apart).
 * Any line starting with `From ` separates messages, since both conventions quote every such body line.
 */
import { PassThrough, type Readable } from 'node:stream';

export type MboxFormat = 'mboxrd' | 'mboxo';

export interface MboxMessage {
  /** The message bytes (separator removed, quoting undone, the writer's trailing empty line removed). */
  readonly stream: Readable;
  /** 1-based position in the file. */
  readonly index: number;
  /** The separator line, e.g. `From alice@example.com Thu Jan  1 00:00:00 1970`. */
  readonly separator: string;
}

const FROM = Buffer.from('From ');

/**
 * Calls `onMessage` for every message, in order, and waits for the promise it returns (the message's stream
 * must be consumed for reading to go on). Text before the first separator is an error: it is not an mbox.
 */
export async function splitMbox(
  source: AsyncIterable<Buffer | string>,
  format: MboxFormat,
  onMessage: (m: MboxMessage) => Promise<void>,
): Promise<number> {
  let carry: Buffer = Buffer.alloc(0);
  let current: { out: PassThrough; done: Promise<void> } | undefined;
  let pendingEmpty: Buffer | undefined; // an empty line held back: the writer's separator padding, or content
  let count = 0;
  let lineNo = 0;

  const write = async (line: Buffer): Promise<void> => {
    if (current && !current.out.write(line)) {
      await Promise.race([new Promise((r) => current?.out.once('drain', r)), current.done]);
    }
  };
  const finish = async (): Promise<void> => {
    if (!current) return;
    pendingEmpty = undefined; // the empty line before a separator (or at the end) belongs to the mbox
    current.out.end();
    await current.done;
    current = undefined;
  };
  const onLine = async (line: Buffer): Promise<void> => {
    lineNo++;
    if (line.subarray(0, 5).equals(FROM)) {
      await finish();
      count++;
      const out = new PassThrough();
      const separator = line.toString('latin1').replace(/\r?\n$/, '');
      current = { out, done: onMessage({ stream: out, index: count, separator }) };
      current.done.catch(() => out.resume());
      return;
    }
    if (!current) {
      if (line.toString('latin1').trim() === '') return;
      throw new Error(`not an mbox file: line ${lineNo} comes before any "From " line`);
    }
    if (pendingEmpty) {
      const held = pendingEmpty;
      pendingEmpty = undefined;
      await write(held);
    }
    if (line.length === 1 || (line.length === 2 && line[0] === 0x0d)) {
      pendingEmpty = line;
      return;
    }
    await write(unquote(line, format));
  };

  for await (const chunk of source) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
    let data = carry.length > 0 ? Buffer.concat([carry, buf]) : buf;
    let from = 0;
    let lf = data.indexOf(0x0a, from);
    while (lf !== -1) {
      await onLine(data.subarray(from, lf + 1));
      from = lf + 1;
      lf = data.indexOf(0x0a, from);
    }
    data = data.subarray(from);
    carry = Buffer.from(data); // a copy: the source may reuse its buffer
  }
  if (carry.length > 0) await onLine(carry);
  await finish();
  return count;
}

function unquote(line: Buffer, format: MboxFormat): Buffer {
  if (line[0] !== 0x3e) return line; // '>'
  let i = 0;
  while (i < line.length && line[i] === 0x3e) i++;
  if (!line.subarray(i, i + 5).equals(FROM)) return line;
  if (format === 'mboxo' && i !== 1) return line;
  return line.subarray(1);
}
