/** RFC 1939 §7 UIDL [msg]: "msn uidl"; deleted messages are left out. */
import { prebuiltFor, sendPrebuilt } from './list.ts';
import { type CommandSpec, TRANSACTION } from './types.ts';

export const uidl: CommandSpec = {
  states: TRANSACTION,
  run(s, cmd) {
    if (cmd.args.length > 0) {
      const { msn, info } = s.message(cmd.args[0]);
      s.reply(`+OK ${msn} ${info.uidl}`);
      return;
    }
    const pre = prebuiltFor(s);
    if (pre !== undefined) return sendPrebuilt(s, `+OK ${s.text.uidlFollows}`, pre.uidlBody);
    return s.sendLines(
      `+OK ${s.text.uidlFollows}`,
      (function* () {
        for (const { msn, info } of s.live()) yield `${msn} ${info.uidl}`;
      })(),
    );
  },
};
