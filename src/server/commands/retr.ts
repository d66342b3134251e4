/** RFC 1939 §5 RETR msg: the whole message, streamed and dot-stuffed. */
import { DotEncoder } from '../../protocol/dot.ts';
import type { MessageInfo } from '../../storage/types.ts';
import { type CommandSession, type CommandSpec, TRANSACTION } from './types.ts';

/** Messages up to this transmitted size are read in one call and answered in one write with their +OK. */
const SMALL_MESSAGE = 128 * 1024;

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
 * Sends one message (RETR) or its top (TOP, RFC 1939 §7): the file is read in chunks and passed once through
 * the dot encoder (CRLF repair, dot-stuffing, TOP cut), and reading waits whenever the socket is full, so
 * memory stays bounded whatever the message size (design.md §6).
 */
export async function sendMessage(s: CommandSession, info: MessageInfo, topLines?: number): Promise<void> {
  const md = s.requireMaildrop();
  const okLine = topLines === undefined ? `+OK ${info.size} octets` : `+OK ${s.text.topFollows}`;
  if (info.size <= SMALL_MESSAGE && md.readSmall) {
    // Most mail is small: one read, one encoding pass, and the reply joins the batch's single write.
    const whole = await md.readSmall(info.id, info.size);
    if (whole !== null) {
      const enc = new DotEncoder(topLines === undefined ? {} : { topLines });
      s.reply(okLine);
      s.queue(enc.write(whole));
      s.queue(enc.end());
      return;
    }
  }
  const stream = await md.open(info.id);
  s.reply(okLine);
  s.flush();
  const enc = new DotEncoder(topLines === undefined ? {} : { topLines });
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (s.isClosed) return;
      await s.write(enc.write(chunk));
      if (enc.finished) break;
    }
    await s.write(enc.end());
  } catch (err) {
    // The +OK is already out, so no -ERR can follow: the only honest answer is to close the connection.
    // Nothing is deleted, since the session never reaches UPDATE.
    s.log.error({ err, uidl: info.uidl }, 'message read failed mid-stream');
    s.destroy('read failure');
  } finally {
    stream.destroy();
  }
}
