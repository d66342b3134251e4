/** RFC 1939 §5 LIST [msg]: scan listings "msn size"; deleted messages are left out. */
import { type CommandSession, type CommandSpec, TRANSACTION } from './types.ts';

export const list: CommandSpec = {
  states: TRANSACTION,
  run(s, cmd) {
    if (cmd.args.length > 0) {
      const { msn, info } = s.message(cmd.args[0]);
      s.reply(`+OK ${msn} ${info.size}`);
      return;
    }
    const [n, size] = s.totals();
    const first = `+OK ${n} messages (${size} octets)`;
    const pre = prebuiltFor(s);
    if (pre !== undefined) return sendPrebuilt(s, first, pre.listBody);
    return s.sendLines(
      first,
      (function* () {
        for (const { msn, info } of s.live()) yield `${msn} ${info.size}`;
      })(),
    );
  },
};

/** The store's prebuilt listing, usable while nothing is marked deleted (msn and lines then match it). */
export function prebuiltFor(s: CommandSession) {
  return s.deleted.size === 0 ? s.requireMaildrop().prebuilt : undefined;
}

/**
 * A multi-line reply whose body the store built once ("msn …\r\n" lines that never start with "."): the
 * status line, the body in one write with backpressure, and the terminator queued behind it.
 */
export async function sendPrebuilt(s: CommandSession, first: string, body: Buffer): Promise<void> {
  s.reply(first);
  s.flush();
  await s.write(body);
  s.reply('.');
}
